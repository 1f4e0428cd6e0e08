"""Leader election among the `poolvisor serve` processes sharing one database.

Exactly one process runs the pool-wide periodic loops (alerts, balloon reclaim, the controller
and HA loops); every process serves the API, runs its own tasks and the repair sweep (the sweep
takes rows by compare-and-set on their leases, so any number of replicas may run it).

Mechanism: a lease record in the store (the `meta` row `leader-lease`, a small JSON document:
holder, term, version, since, renewed), changed only by compare-and-set on its exact value. The
leader bumps `version` every `lease_s / 3`; a follower that has seen the same record, unchanged,
for `lease_s` seconds *measured on its own monotonic clock* takes it over (term + 1). This is the
observed-time rule of Kubernetes' client-go leader election.

Why a lease row rather than PostgreSQL advisory locks:
- one implementation on PostgreSQL and SQLite (tests, single-node installs), in the tables the
  migrations already create;
- no wall-clock comparison between machines: expiry is judged by the follower's own monotonic
  clock from when it saw the record change, so clock skew cannot make two leaders;
- a leader knows when it may no longer act: it counts itself leader only until `lease_s` after
  the start of its last successful renewal (minus a margin), which is before any follower can
  take over; a leader cut off from the database therefore steps down by itself. A session-level
  advisory lock gives no such bound: a server that killed the leader's session (idle timeout,
  pg_terminate_backend, failover) leaves it believing it leads until its next query, and a
  half-open TCP connection keeps the lock on the server (no leader at all) until keepalives expire;
- takeover after a SIGKILL is bounded by `lease_s` (+ one poll), a graceful stop hands over at
  once (the record is released).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.store import Store
from poolvisor.store.rows import MetaRow

log = logging.getLogger("poolvisor.leader")
KEY = "leader-lease"
DEFAULT_LEADER_LEASE_S = 5.0
MIN_LEADER_LEASE_S, MAX_LEADER_LEASE_S = 1.0, 300.0
SAFETY = 0.8  # a leader acts only during this fraction of its lease (clock-rate drift, slow commits)


@dataclass(frozen=True)
class LeaseRecord:
    """The lease as stored; `holder` None once released by a leader that stopped."""

    holder: str | None
    term: int
    version: int
    since: str  # ISO time the current holder took it (display only, never compared)
    renewed: str  # ISO time of the latest renewal (display only)

    def dump(self) -> str:
        return json.dumps({"holder": self.holder, "term": self.term, "version": self.version,
                           "since": self.since, "renewed": self.renewed}, sort_keys=True)

    @staticmethod
    def load(text: str) -> LeaseRecord | None:
        try:
            d = json.loads(text)
            return LeaseRecord(d["holder"], int(d["term"]), int(d["version"]), str(d["since"]),
                               str(d["renewed"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: treated as an expired record, taken over by compare-and-set


@dataclass(frozen=True)
class LeaderStatus:
    leader: str | None  # the holder of the lease record (None: nobody yet, or released)
    term: int
    since: str | None
    renewed: str | None
    me: str
    is_leader: bool
    lease_s: float


def check_lease(lease_s: float) -> float:
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float) \
            or not MIN_LEADER_LEASE_S <= lease_s <= MAX_LEADER_LEASE_S:
        raise InvalidInputError(
            f"leader lease must be {MIN_LEADER_LEASE_S:g}..{MAX_LEADER_LEASE_S:g} seconds")
    return float(lease_s)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LeaderElection:
    """This process's candidacy. `tick()` is one step (tests drive it with a fake `clock`);
    `start()` runs it on a daemon thread. `is_leader()` is the gate of the leader-only loops."""

    def __init__(self, store: Store, me: str, lease_s: float = DEFAULT_LEADER_LEASE_S, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.store = store
        self.me = me
        self.lease_s = check_lease(lease_s)
        self.clock = clock
        self.on_change = on_change
        self._valid_until = float("-inf")  # monotonic: we may act as leader until then
        self._leading = False
        self._observed: str | None = None  # the record as last seen while following
        self._observed_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the gate ---------------------------------------------------------------------------
    def is_leader(self) -> bool:
        return self._leading and self.clock() < self._valid_until

    # ---- one step ---------------------------------------------------------------------------
    def tick(self) -> bool:
        """Renew (leader) or watch and maybe take over (follower); whether we lead afterwards.
        A database error is logged and changes nothing: a leader's own deadline ends its term."""
        with self._lock:
            t0 = self.clock()
            try:
                won = self.store.run(lambda s: self._step(s, t0), write=True)
            except (PoolvisorError, SQLAlchemyError) as e:
                log.warning("leader election: database unavailable: %s", getattr(e, "message", e))
                won = None
            was = self._leading
            if won is True:
                self._leading, self._valid_until = True, t0 + SAFETY * self.lease_s
            elif won is False:
                self._leading, self._valid_until = False, float("-inf")
            lead = self.is_leader()
        if lead != was:
            log.warning("leader election: %s (%s)",
                        "this process now leads" if lead else "no longer the leader", self.me)
            if self.on_change is not None:
                self.on_change(lead)
        return lead

    def _step(self, s: Session, t0: float) -> bool:
        row = s.get(MetaRow, KEY)
        if row is None:
            rec = LeaseRecord(self.me, 1, 1, _now_iso(), _now_iso())
            try:
                with s.begin_nested():
                    s.add(MetaRow(key=KEY, value=rec.dump()))
            except IntegrityError:  # another process created it first
                return False
            return True
        old_text, cur = row.value, LeaseRecord.load(row.value)
        if cur is not None and cur.holder == self.me:  # renew
            new = LeaseRecord(self.me, cur.term, cur.version + 1, cur.since, _now_iso())
            return self._cas(s, old_text, new)
        # follow: has the record stayed the same for a whole lease on our clock?
        if old_text != self._observed:
            self._observed, self._observed_at = old_text, t0
        released = cur is not None and cur.holder is None
        if not released and t0 - self._observed_at < self.lease_s:  # (unreadable: waited out too)
            return False
        term = cur.term + 1 if cur is not None else 1
        version = cur.version + 1 if cur is not None else 1
        if self._cas(s, old_text, LeaseRecord(self.me, term, version, _now_iso(), _now_iso())):
            log.warning("leader election: took over from %s (term %d)",
                        cur.holder if cur is not None and cur.holder else "nobody", term)
            return True
        return False

    @staticmethod
    def _cas(s: Session, old: str, new: LeaseRecord) -> bool:
        r = s.execute(update(MetaRow).where(MetaRow.key == KEY, MetaRow.value == old)
                      .values(value=new.dump()).execution_options(synchronize_session=False))
        return r.rowcount == 1  # type: ignore[attr-defined]

    def release(self) -> None:
        """Step down and hand over at once (a graceful stop); a no-op when not leading."""
        with self._lock:
            was = self._leading
            self._leading, self._valid_until = False, float("-inf")

            def tx(s: Session) -> None:
                row = s.get(MetaRow, KEY)
                cur = LeaseRecord.load(row.value) if row is not None else None
                if row is not None and cur is not None and cur.holder == self.me:
                    gone = LeaseRecord(None, cur.term, cur.version + 1, cur.since, _now_iso())
                    self._cas(s, row.value, gone)

            try:
                self.store.run(tx, write=True)
            except (PoolvisorError, SQLAlchemyError) as e:
                log.warning("leader election: could not release the lease: %s", getattr(e, "message", e))
        if was and self.on_change is not None:
            self.on_change(False)

    # ---- status -----------------------------------------------------------------------------
    def status(self) -> LeaderStatus:
        return read_status(self.store, self.me, self.is_leader(), self.lease_s)

    # ---- thread -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.tick()  # lead (or know we follow) before the loops start
        self._thread = threading.Thread(target=self._run, name="poolvisor-leader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            lead = self.tick()
            # the leader renews three times per lease; a follower looks five times per lease (<= 1 s)
            self._stop.wait(self.lease_s / 3 if lead else min(1.0, self.lease_s / 5))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.release()


def read_status(store: Store, me: str, is_leader: bool, lease_s: float) -> LeaderStatus:
    """Who holds the lease record (whether it is still being renewed is for followers to judge)."""
    def tx(s: Session) -> LeaseRecord | None:
        v = s.scalar(select(MetaRow.value).where(MetaRow.key == KEY))
        return LeaseRecord.load(v) if v is not None else None

    cur = store.run(tx, write=False)
    if cur is None:
        return LeaderStatus(None, 0, None, None, me, is_leader, lease_s)
    return LeaderStatus(cur.holder, cur.term, cur.since, cur.renewed, me, is_leader, lease_s)
