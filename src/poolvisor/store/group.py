"""Group commit: the short write transactions of concurrent requests, committed together.

A server's hot use cases (a create's claim and confirmation, a delete's mark and finish) are each
a write transaction of a few statements; on SQLite every one of them queued for the one write
lock, and paid a session, a BEGIN IMMEDIATE and a COMMIT of its own. With group commit, a
request thread hands its transaction function to one writer thread and waits; the writer takes
every function waiting (up to `max_items`) and runs them one after the other in **one**
transaction, then commits once and wakes them all. So:

- each request is answered only after the commit that holds its writes (nothing acknowledged is
  lost by a crash: a group that did not commit is not acknowledged to anyone);
- the functions of a group run in order, each seeing the writes of those before it, exactly as if
  they had been committed one after the other; the ledger's guarded UPDATEs re-check capacity and
  generations inside the transaction as before;
- if one function of a group raises (Stale, a 409, a database error) or the group's commit fails,
  the whole transaction is rolled back and each function of the group is run again **alone**, in
  its own transaction, and gets its own outcome: a failed item never fails the others. (Every
  transaction function may already be run again: Store.run does so on Stale.)

A function must only touch the database through its session (no driver calls, no waiting on
other threads): it runs on the writer thread while the others of its group wait. A function that
keeps per-transaction notes in `Session.info` must keep only its own (the session is shared).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from poolvisor.domain.errors import UnavailableError

if TYPE_CHECKING:
    from poolvisor.store.engine import Store

T = TypeVar("T")
MAX_ITEMS = 64
log = logging.getLogger("poolvisor.store")


class _Item:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[Session], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """The writer thread of one Store and its queue."""

    def __init__(self, store: Store, max_items: int = MAX_ITEMS) -> None:
        self.store = store
        self.max_items = max_items
        self._queue: deque[_Item] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="poolvisor-group-commit", daemon=True)
        self.groups = 0  # transactions committed for more than one function (observable in tests)
        self.items = 0
        self.fallbacks = 0  # groups rolled back and run again one function at a time
        self.taken = 0  # functions the writer took from the queue so far

    def start(self) -> None:
        self._thread.start()

    def run(self, fn: Callable[[Session], T]) -> T:
        """fn(session) in the next group's transaction; returns once that committed (or raises
        what fn raised when run alone: Stale, ConflictError, UnavailableError, ...)."""
        if threading.current_thread() is self._thread:
            return self.store.run_once(fn, write=True, grouped=False)  # nested: no waiting on itself
        item = _Item(fn)
        with self._cv:
            if self._stopping:
                raise UnavailableError("the server is stopping; retry")
            self._queue.append(item)
            self._cv.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def stop(self) -> None:
        """Run what is queued, then end the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue:
                    return  # stopping and drained
                n = min(len(self._queue), self.max_items)
                batch = [self._queue.popleft() for _ in range(n)]
                self.taken += n
            try:
                self.commit(batch)
            except BaseException as e:  # never leave a caller waiting, never let the thread die
                log.exception("group commit failed")
                for it in batch:
                    if not it.done.is_set():
                        it.error = UnavailableError(f"group commit failed: {type(e).__name__}")
                        it.done.set()

    def commit(self, batch: list[_Item]) -> None:
        """One transaction for the batch; on any failure, each item alone."""
        if len(batch) > 1:
            try:
                results = self.store.run_once(lambda s: [it.fn(s) for it in batch], write=True,
                                              grouped=False)
            except Exception:  # noqa: BLE001 - an item's error or the commit's: run them alone
                self.fallbacks += 1
            else:
                self.groups += 1
                self.items += len(batch)
                for it, r in zip(batch, results, strict=True):
                    it.result = r
                    it.done.set()
                return
        for it in batch:
            try:
                it.result = self.store.run_once(it.fn, write=True, grouped=False)
            except Exception as e:  # noqa: BLE001 - handed to the waiting caller, who raises it
                it.error = e
            self.items += 1
            it.done.set()
