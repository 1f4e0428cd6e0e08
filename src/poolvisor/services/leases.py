"""Leases on in-flight use cases, so crash repair can tell a dead process's work from a live one's.

A use case that leaves a workload in a transient state (placing, migrating, deleting) between two
transactions stamps the row with its owner (this Services instance: host, pid, random suffix) and
an expiry `duration` seconds ahead. While the use case runs (the driver call), `hold()` keeps the
row's id in an in-memory set that a background thread renews every duration/3 seconds. When the
use case ends, normally or by an exception, renewal stops; a finished use case clears the lease.

So an expired lease on a transient row means its owner stopped working on it (the process died, or
the thread did): the repair sweep takes the row over with a compare-and-set (the UPDATE only matches
while the lease is still expired) and resolves it. Every finishing transaction re-checks that it
still owns the lease, so a use case whose lease was taken over (a process stalled longer than the
lease) backs off instead of racing the repair. Clocks of processes sharing a database are assumed
to agree to well within the lease duration (NTP).

Rows left transient by a version without leases (lease NULL) count as expired `LEGACY_STALE_S`
after their last update, the rule that version used.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.services.records import DELETING, MIGRATING, PLACING
from poolvisor.store.engine import Store
from poolvisor.store.rows import TaskRow, WorkloadRow

DEFAULT_LEASE_S = 5.0
MIN_LEASE_S, MAX_LEASE_S = 0.05, 3600.0
LEGACY_STALE_S = 30.0
LATE_SHARE = 0.1  # restamp_if_late: a stamp older than this share of the lease is written again
TRANSIENT = (PLACING, MIGRATING, DELETING)
TASK_LIVE = ("queued", "running")  # task states whose leases are renewed
log = logging.getLogger("poolvisor.leases")


_W = cast(Table, WorkloadRow.__table__).c
_RESTAMP = (update(cast(Table, WorkloadRow.__table__))  # built once: it runs in every create's claim
            .where(_W.id.in_(bindparam("ids", expanding=True)), _W.lease_owner == bindparam("owner"))
            .values(lease_expires=bindparam("expires")))


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_owner_id() -> str:
    """Unique per Services instance and recognizable: `host:pid:random`."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def expired(now: datetime) -> ColumnElement[bool]:
    """SQL: the row's lease ran out by `now` (or it has none and is older than LEGACY_STALE_S)."""
    return or_(WorkloadRow.lease_expires <= now,
               and_(WorkloadRow.lease_expires.is_(None),
                    WorkloadRow.updated_at <= now - timedelta(seconds=LEGACY_STALE_S)))


class Leases:
    """This process's leases: stamping rows, the in-flight set, and the renewal thread."""

    def __init__(self, store: Store, duration: float = DEFAULT_LEASE_S, owner: str | None = None) -> None:
        if isinstance(duration, bool) or not isinstance(duration, int | float) \
                or not MIN_LEASE_S <= duration <= MAX_LEASE_S:
            raise InvalidInputError(f"lease duration must be {MIN_LEASE_S:g}..{MAX_LEASE_S:g} seconds")
        self.store = store
        self.duration = float(duration)
        self.owner = owner or new_owner_id()
        self._held: Counter[int] = Counter()
        self._held_tasks: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- rows (inside the caller's transaction) ------------------------------------------------
    def expiry(self) -> datetime:
        return utcnow() + timedelta(seconds=self.duration)

    def stamp(self, w: WorkloadRow) -> None:
        w.lease_owner, w.lease_expires = self.owner, self.expiry()

    def stamp_values(self) -> dict[str, Any]:
        return {"lease_owner": self.owner, "lease_expires": self.expiry()}

    def restamp(self, s: Session, ids: list[int]) -> None:
        """At the end of a claiming transaction: start the lease now, not when the transaction
        began (it may have queued behind other writers for longer than the lease)."""
        s.flush()
        s.connection().execute(_RESTAMP, {"ids": ids, "owner": self.owner, "expires": self.expiry()})

    def restamp_if_late(self, s: Session, ids: list[int], stamped: datetime) -> None:
        """restamp(), only when the lease stamped as `stamped` (an expiry) has already run down by
        more than LATE_SHARE of its duration since (the claim waited inside its transaction, e.g.
        for a PostgreSQL row lock): the usual claim stamps its INSERT and needs no second UPDATE."""
        if self.expiry() - stamped > timedelta(seconds=self.duration * LATE_SHARE):
            self.restamp(s, ids)

    @staticmethod
    def clear(w: WorkloadRow) -> None:
        w.lease_owner, w.lease_expires = None, None

    def owns(self, w: Any) -> bool:  # a WorkloadRow or a Core row with its lease_owner
        return w.lease_owner == self.owner

    def take(self, s: Session, wid: int, state: str, now: datetime) -> bool:
        """Compare-and-set: become the owner of an expired lease (False if it was renewed or taken)."""
        exp = max(now, utcnow()) + timedelta(seconds=self.duration)
        r = s.execute(update(WorkloadRow)
                      .where(WorkloadRow.id == wid, WorkloadRow.state == state, expired(now))
                      .values(lease_owner=self.owner, lease_expires=exp)
                      .execution_options(synchronize_session=False))
        return bool(r.rowcount == 1)  # type: ignore[attr-defined]

    # ---- in flight -----------------------------------------------------------------------------
    @contextmanager
    def hold(self, ids: Iterable[int]) -> Iterator[None]:
        """Renew these rows' leases until the block ends (however it ends)."""
        ids = list(ids)
        with self._lock:
            self._held.update(ids)
            self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                self._held.subtract(ids)
                self._held = +self._held  # drop ids no longer held

    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)

    @contextmanager
    def hold_tasks(self, ids: Iterable[int]) -> Iterator[None]:
        """Renew these tasks' leases (tasks.py) until the block ends, like hold() for workloads."""
        ids = list(ids)
        with self._lock:
            self._held_tasks.update(ids)
            self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                self._held_tasks.subtract(ids)
                self._held_tasks = +self._held_tasks

    def held_tasks(self) -> set[int]:
        with self._lock:
            return set(self._held_tasks)

    def renew(self) -> int:
        """Push the expiry of every held row this process still owns; returns how many.

        PostgreSQL: one multi-row UPDATE locks its rows one after the other, so while it waited
        for a row another transaction holds (this process's writer confirming or deleting a
        workload in a group of several) it held the rows it had already renewed, which that
        group could need next: a deadlock, one of the two aborted after `deadlock_timeout` (1 s,
        the writer stalled all along). So the rows are renewed `SKIP LOCKED` first (it never
        waits), then each row that was held by someone else alone, in a transaction of its own
        (waiting for one row while holding none cannot close a cycle)."""
        ids, tasks = sorted(self.held()), sorted(self.held_tasks())
        if not ids and not tasks:
            return 0
        if self.store.is_sqlite:  # one writer at a time: nothing to wait for under the write lock
            return self.store.run(lambda s: len(self._renew(s, WorkloadRow, ids, TRANSIENT))
                                  + len(self._renew(s, TaskRow, tasks, TASK_LIVE)), write=True)

        def tx(s: Session) -> tuple[int, list[tuple[Any, int]]]:
            n, busy = 0, []
            for row, got, states in ((WorkloadRow, ids, TRANSIENT), (TaskRow, tasks, TASK_LIVE)):
                done = self._renew(s, row, got, states, skip_locked=True)
                n += len(done)
                if rest := [i for i in got if i not in done]:  # locked by others, or not ours any more
                    still = s.scalars(select(row.id).where(*self._mine(row, rest, states)))
                    busy += [(row, int(i)) for i in still]
            return n, busy

        n, busy = self.store.run(tx, write=True)
        for row, i in busy:  # one row a transaction: may wait, holding nothing else
            n += self._renew_alone(row, i)
        return n

    def _renew_alone(self, row: Any, i: int) -> int:
        return self.store.run(lambda s: len(self._renew(s, row, [i], _states(row))), write=True)

    def _mine(self, row: Any, ids: list[int], states: tuple[str, ...]) -> tuple[ColumnElement[bool], ...]:
        return row.id.in_(ids), row.lease_owner == self.owner, row.state.in_(states)

    def _renew(self, s: Session, row: Any, ids: list[int], states: tuple[str, ...], *,
               skip_locked: bool = False) -> set[int]:
        """Renew the leases of these rows that this process still owns; the ids renewed.
        `skip_locked` (PostgreSQL): rows another transaction holds are left out, never waited for."""
        if not ids:
            return set()
        mine = self._mine(row, ids, states)
        if skip_locked:
            free = select(row.id).where(*mine).with_for_update(skip_locked=True, key_share=True)
            mine = (row.id.in_(free),)
        r = s.execute(update(row).where(*mine).values(lease_expires=self.expiry()).returning(row.id)
                      .execution_options(synchronize_session=False))
        return {int(i) for i in r.scalars()}

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._renew_loop, name="poolvisor-lease-renewal",
                                            daemon=True)
            self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.duration / 3):
            try:
                self.renew()
            except PoolvisorError as e:  # database unavailable: try again next round
                log.warning("lease renewal failed: %s", e.message)
            except Exception:  # never let the thread die: the leases would lapse under live work
                log.exception("lease renewal failed")

    def close(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)


def _states(row: Any) -> tuple[str, ...]:
    return TRANSIENT if row is WorkloadRow else TASK_LIVE
