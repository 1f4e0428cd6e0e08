"""Group commit: the short write transactions of concurrent requests, committed together.

A server's hot use cases (a create's claim and confirmation, a delete's mark and finish) are each
a write transaction of a few statements; on SQLite every one of them queued for the one write
lock, and paid a session, a BEGIN IMMEDIATE and a COMMIT of its own (on PostgreSQL: a pooled
connection, a thread and a COMMIT round trip each). With group commit, a
request thread hands its transaction function to one writer thread and waits; the writer takes
every function waiting (up to `max_items`) and runs them one after the other in **one**
transaction, then commits once and wakes them all. So:

- each request is answered only after the commit that holds its writes (nothing acknowledged is
  lost by a crash: a group that did not commit is not acknowledged to anyone);
- the functions of a group run in order, each seeing the writes of those before it, exactly as if
  they had been committed one after the other; the ledger's guarded UPDATEs re-check capacity and
  generations inside the transaction as before;
- the functions' event rows (`Prepared.later`, store/prepared.py) are sent together, one
  statement for the group, before its commit;
- if one function of a group raises (Stale, a 409, a database error) or the group's commit fails,
  the whole transaction is rolled back and each function of the group is run again **alone**, in
  its own transaction, and gets its own outcome: a failed item never fails the others. (Every
  transaction function may already be run again: Store.run does so on Stale.)

On PostgreSQL a group's transaction holds the row locks of all its functions until its commit,
and another replica's group holds others: taken in each function's own order, two groups could
each wait for the other (a deadlock, one aborted after `deadlock_timeout`). So a function declares
the hosts whose rows it will lock (`hosts`: a delete's release), and a group of several takes all
those rows first, in host-id order (`lock_hosts`): the one global order every multi-host
transaction follows (the claim batch too, services/claim_batch.py), so groups of different
processes queue on each other instead of deadlocking. A deadlock or serialization failure that
still happens (a function touching a host it did not declare) is one more failure of the group:
each function runs again alone, as above. On SQLite (one writer at a time) nothing is locked first.

The writer is a `QueueWorker` (store/worker.py): batched placement (services/claim_batch.py)
is another lane of the same thread, and a caller may hand a function over without waiting
(`submit`, with a continuation run on the writer thread once the commit is done: the served create
and delete flows, services/flow.py).

A function must only touch the database through its session (no driver calls, no waiting on
other threads): it runs on the writer thread while the others of its group wait. A function that
keeps per-transaction notes in `Session.info` must keep only its own (the session is shared).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import UnavailableError
from poolvisor.store.prepared import PreparedIn, defer, flush_deferred
from poolvisor.store.rows import HostRow
from poolvisor.store.worker import QueueWorker

if TYPE_CHECKING:
    from poolvisor.store.engine import Store

T = TypeVar("T")
MAX_ITEMS = 64
LANE = "tx"
log = logging.getLogger("poolvisor.store")
Done = Callable[[Any, BaseException | None], None]
# ORDER BY under FOR UPDATE: PostgreSQL locks the rows as the sort returns them, in id order. FOR NO
# KEY UPDATE (key_share) is the lock the ledger's UPDATEs of a host take anyway; unlike FOR UPDATE it
# lets other transactions' foreign-key checks (a workload or allocation row naming the host) pass.
_LOCK_HOSTS = PreparedIn(select(HostRow.id, HostRow.generation)
                         .where(HostRow.id.in_(bindparam("ids", expanding=True)))
                         .order_by(HostRow.id).with_for_update(key_share=True))


def lock_hosts(s: Session, host_ids: Iterable[int]) -> dict[int, int]:
    """PostgreSQL: lock these hosts' rows in id order (the global order of a transaction that holds
    several hosts: see the module docstring) and return their generations as locked, {id: gen}
    (a host deleted meanwhile is missing). Until the commit nobody else changes them."""
    ids = sorted(set(host_ids))
    if not ids:
        return {}
    return {int(h): int(g) for h, g in _LOCK_HOSTS.all(s, ids)}  # (on the DBAPI cursor: every batch)


_LOCK_HOST = select(HostRow.generation).where(HostRow.id == bindparam("h"))


def lock_host(s: Session, host_id: int, *, wait: bool) -> int | None:
    """PostgreSQL: lock one more host's row in a transaction holding others, and return its
    generation. `wait` only when its id is above every host the transaction holds (the global
    order); otherwise NOWAIT, in a savepoint: None when another transaction holds it (or it was
    deleted), and nothing waits out of order."""
    if wait:
        g = s.connection().execute(_LOCK_HOST.with_for_update(key_share=True), {"h": host_id}).scalar()
    else:
        try:
            with s.begin_nested():
                g = s.connection().execute(_LOCK_HOST.with_for_update(nowait=True, key_share=True),
                                           {"h": host_id}).scalar()
        except DBAPIError as e:
            if getattr(e.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            return None
    return None if g is None else int(g)


class _Item:
    __slots__ = ("fn", "done", "hosts")

    def __init__(self, fn: Callable[[Session], Any], done: Done, hosts: tuple[int, ...] = ()) -> None:
        self.fn = fn
        self.done = done  # called once, on the writer thread, with (result, None) or (None, error)
        self.hosts = hosts  # the hosts whose rows fn locks (PostgreSQL: taken first, in id order)


class GroupCommit:
    """The writer thread of one Store (a QueueWorker other batched writers share: claim_batch.py)
    and its lane of transaction functions."""

    def __init__(self, store: Store, max_items: int = MAX_ITEMS) -> None:
        self.store = store
        self.worker = QueueWorker("poolvisor-writer", max_items)
        self.worker.add_lane(LANE, self.commit, self._failed)
        self.groups = 0  # transactions committed for more than one function (observable in tests)
        self.items = 0
        self.fallbacks = 0  # groups rolled back and run again one function at a time

    @property
    def taken(self) -> int:
        """Functions the writer took from the queue so far."""
        return self.worker.taken[LANE]

    @property
    def queued(self) -> int:
        return self.worker.queued(LANE)

    def start(self) -> None:
        """(The thread starts with the first item.)"""

    def submit(self, fn: Callable[[Session], Any], done: Done, hosts: tuple[int, ...] = ()) -> None:
        """fn(session) in the next group's transaction; `done(result, error)` on the writer thread
        once that committed (or with what fn raised when run alone). Never waits. `hosts`: the
        hosts whose rows fn locks (see the module docstring)."""
        self.worker.put(LANE, _Item(fn, done, hosts))

    def run(self, fn: Callable[[Session], T], hosts: tuple[int, ...] = ()) -> T:
        """fn(session) in the next group's transaction; returns once that committed (or raises
        what fn raised when run alone: Stale, ConflictError, UnavailableError, ...)."""
        if self.worker.on_thread:
            return self.store.run_once(fn, write=True, grouped=False)  # nested: no waiting on itself
        event = threading.Event()
        out: list[Any] = [None, None]

        def done(result: Any, error: BaseException | None) -> None:
            out[0], out[1] = result, error
            event.set()

        self.submit(fn, done, hosts)
        event.wait()
        if out[1] is not None:
            raise out[1]
        return out[0]

    def stop(self) -> None:
        """Run what is queued, then end the thread."""
        self.worker.stop()

    @staticmethod
    def _failed(batch: list[_Item], e: BaseException) -> None:
        for it in batch:  # (commit answers each item once: only those it had not reached are left)
            if it.fn is not None:
                _answer(it, None, UnavailableError(f"group commit failed: {type(e).__name__}"))

    def commit(self, batch: list[_Item]) -> None:
        """One transaction for the batch (PostgreSQL: the declared hosts locked first, in id
        order); on any failure, each item alone."""
        if len(batch) > 1:
            hosts = set() if self.store.is_sqlite else {h for it in batch for h in it.hosts}

            def tx(s: Session) -> list[Any]:
                defer(s)  # the functions' event rows: sent together before the commit
                lock_hosts(s, hosts)
                out = [it.fn(s) for it in batch]
                flush_deferred(s)
                return out

            try:
                results = self.store.run_once(tx, write=True, grouped=False)
            except Exception:  # noqa: BLE001 - an item's error or the commit's: run them alone
                self.fallbacks += 1
            else:
                self.groups += 1
                self.items += len(batch)
                for it, r in zip(batch, results, strict=True):
                    _answer(it, r, None)
                return
        for it in batch:
            try:
                r, err = self.store.run_once(_deferring(it.fn), write=True, grouped=False), None
            except Exception as e:  # noqa: BLE001 - handed to the waiting caller, who raises it
                r, err = None, e
            self.items += 1
            _answer(it, r, err)


def _deferring(fn: Callable[[Session], T]) -> Callable[[Session], T]:
    """fn in a transaction that sends its event rows together before the commit (prepared.defer)."""
    def tx(s: Session) -> T:
        defer(s)
        out = fn(s)
        flush_deferred(s)
        return out

    return tx


def _answer(it: _Item, result: Any, error: BaseException | None) -> None:
    """Call the item's `done` once; a continuation that raises must not fail the others."""
    done, it.fn = it.done, None  # type: ignore[assignment]
    try:
        done(result, error)
    except Exception:  # noqa: BLE001 - the continuation's own bug: logged, the writer goes on
        log.exception("a group commit continuation failed")
