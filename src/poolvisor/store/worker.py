"""A queue handed to one worker thread, which takes what waits in batches.

Group commit (store/group.py) and batched placement (services/claim_batch.py) are both "callers
put work in a queue, one thread takes everything waiting and handles it together". This is that
pattern once: a `QueueWorker` has lanes (one per kind of work, each with its handler); the thread
takes up to `max_items` waiting items, in arrival order, and hands each lane its share, lanes in
the order they were added (group commit's lane first: a delete's release commits before the
creates of the same round decide). One thread for every lane: a server's writes are serialized on
SQLite anyway, on PostgreSQL one batch's round trips beat many threads' transactions, and every
extra thread trading the GIL costs CPU.

A handler must answer every item it is given (it owns their completion); should it raise, the
lane's `fail(items, error)` answers those it left. Items put from the worker thread itself (a
continuation queuing its next step) wait for the next round.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from poolvisor.domain.errors import UnavailableError

log = logging.getLogger("poolvisor.store")
Handler = Callable[[list[Any]], None]


class QueueWorker:
    """One thread, one queue, lanes of work handled in batches."""

    def __init__(self, name: str, max_items: int = 64) -> None:
        self.name = name
        self.max_items = max_items
        self._lanes: dict[str, tuple[Handler, Callable[[list[Any], BaseException], None]]] = {}
        self._queue: deque[tuple[str, Any]] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.taken: Counter[str] = Counter()  # items taken per lane so far (observable in tests)

    def add_lane(self, lane: str, handle: Handler, fail: Callable[[list[Any], BaseException], None]) -> None:
        with self._cv:
            self._lanes[lane] = (handle, fail)

    def put(self, lane: str, item: Any) -> None:
        """Queue `item` for `lane` (started on first use); UnavailableError once stopping."""
        with self._cv:
            if self._stopping:
                raise UnavailableError("the server is stopping; retry")
            if lane not in self._lanes:
                raise KeyError(lane)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._queue.append((lane, item))
            self._cv.notify()

    def queued(self, lane: str | None = None) -> int:
        with self._cv:
            return sum(1 for ln, _ in self._queue if lane is None or ln == lane)

    @property
    def on_thread(self) -> bool:
        """Is the caller the worker thread (which must never wait on its own queue)?"""
        return self._thread is threading.current_thread()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Handle what is queued, then end the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue:
                    return  # stopping and drained
                n = min(len(self._queue), self.max_items)
                taken = [self._queue.popleft() for _ in range(n)]
                lanes = list(self._lanes.items())
            by_lane: dict[str, list[Any]] = {}
            for lane, item in taken:
                by_lane.setdefault(lane, []).append(item)
                self.taken[lane] += 1
            for lane, (handle, fail) in lanes:
                items = by_lane.get(lane)
                if not items:
                    continue
                try:
                    handle(items)
                except BaseException as e:  # never leave a caller waiting, never let the thread die
                    log.exception("%s: lane %s failed", self.name, lane)
                    try:
                        fail(items, e)
                    except BaseException:
                        log.exception("%s: answering lane %s's items failed", self.name, lane)
