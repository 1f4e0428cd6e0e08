"""The pending-creation queue: a create that cannot be placed now may wait (`wait: true`).

A waiting request is a row of `pending_workloads` holding the create's arguments; nothing is
allocated for it. `drain` (run by QueueLoop on `poolvisor.clock`, and after each enqueue) orders
each pool's waiting requests with the pool's discipline (policies/queueing.py, the pure
functions) and tries them in that order through the ordinary create path (services/workloads.py:
same placement, quotas, preemption, ledger), skipping those that still do not fit, so a smaller
request may use room a larger one cannot. A request created is removed (event
`workload.dequeued`); one refused for good (its project or flavor gone, a quota, a name taken
meanwhile) is removed with a `queue.dropped` event saying why. The depth per class feeds the
`poolvisor_queue_depth` gauge.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.clock.background import BackgroundLoop
from poolvisor.domain.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    NoValidHostError,
    PoolvisorError,
)
from poolvisor.domain.models import check_name
from poolvisor.observability.instruments import QUEUE_DEPTH
from poolvisor.policies import queueing
from poolvisor.policies.preemption import DEFAULT_CLASS, PRIORITY_CLASSES, class_rank
from poolvisor.policies.queueing import Pending, check_discipline
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.context import ServiceContext
from poolvisor.services.records import HOLDING_STATES
from poolvisor.services.workloads import WorkloadService
from poolvisor.store.rows import (
    AllocationRow,
    HostResourceRow,
    HostRow,
    PendingWorkloadRow,
    PoolRow,
    ProjectRow,
    WorkloadRow,
)

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 2.0
MAX_DURATION_S = 10 * 365 * 86400.0
NO_POOL = "(no pool)"  # requests without a pool are served together, in the default discipline


@dataclass(frozen=True)
class PendingRecord:
    id: int
    project: str
    name: str
    pool: str | None
    priority_class: str
    duration_s: float | None
    demand: dict[str, float]
    attempts: int
    last_error: str | None
    created_at: datetime


@dataclass(frozen=True)
class DrainResult:
    placed: list[str]
    dropped: list[str]
    waiting: int


class QueueService(ServiceBase):
    def __init__(self, ctx: ServiceContext, workloads: WorkloadService) -> None:
        super().__init__(ctx)
        self.workloads = workloads
        self._drain_lock = threading.Lock()  # one drain at a time in this process
        self._published: dict[str, int] = dict.fromkeys(PRIORITY_CLASSES, 0)  # the gauge starts at 0
        # standby hosts that finished booting join before a drain (services/host_power.py): a
        # request that woke one is placed as soon as it is up
        self.power_sync: Callable[[], object] | None = None

    # ---- enqueue and queries ----------------------------------------------------------------------
    def create_or_wait(self, project: str, name: str, *, duration_s: float | None = None,
                       create_project: bool = False, explain: bool = False,
                       **create: Any) -> tuple[Any, PendingRecord | None]:
        """Create now when it fits (the workload record, None); else queue it (None, the entry).
        `create` holds create_workload's placement arguments: what the queue replays later."""
        if duration_s is not None and (isinstance(duration_s, bool)
                                       or not 0 < float(duration_s) <= MAX_DURATION_S):
            raise InvalidInputError(f"duration_s must be in (0, {MAX_DURATION_S:g}]")
        try:
            return self.workloads.create_workload(project, name, create_project=create_project,
                                                  explain=explain, **create), None
        except NoValidHostError as e:
            why = e.message
        return None, self.enqueue(project, name, duration_s=duration_s, last_error=why, **create)

    def enqueue(self, project: str, name: str, *, duration_s: float | None = None,
                last_error: str | None = None, **create: Any) -> PendingRecord:
        """Queue a creation request (create_or_wait calls it once the create path has checked the
        arguments and found no host: an invalid request is refused then, not dropped later)."""
        pclass = str(create.get("priority_class", DEFAULT_CLASS))
        if pclass not in PRIORITY_CLASSES:
            raise InvalidInputError(f"unknown priority class {pclass!r}")
        check_name("workload", name)

        def tx(s: Session) -> PendingRecord:
            pid = self._project(s, project).id
            if s.scalars(select(WorkloadRow.id).filter_by(project_id=pid, name=name)).first() is not None:
                raise ConflictError(f"workload {name!r} already exists in project {project!r}")
            pool = create.get("pool")
            pool_id = self._pool(s, pool).id if pool is not None else None
            demand = create.get("demand")
            if demand is None:
                demand = dict(self._flavor(s, str(create["flavor"])).demand)
            row = PendingWorkloadRow(project_id=pid, pool_id=pool_id, name=name, priority_class=pclass,
                                     duration_s=None if duration_s is None else float(duration_s),
                                     demand={str(k): float(v) for k, v in demand.items()},
                                     request=dict(create), attempts=1, last_error=last_error)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise ConflictError(f"a request for {name!r} already waits in project {project!r}") from None
            self._event(s, "workload.queued", f"workload/{project}/{name}",
                        f"workload {name} ({pclass}) waits for capacity", project=project,
                        data={"pool": pool, "class": pclass})
            return _record(row, project, pool)

        rec = self._write(tx)
        self.publish_depth()
        return rec

    def list_pending(self, project: str | None = None) -> list[PendingRecord]:
        def tx(s: Session) -> list[PendingRecord]:
            q = (select(PendingWorkloadRow, ProjectRow.name, PoolRow.name)
                 .join(ProjectRow, ProjectRow.id == PendingWorkloadRow.project_id)
                 .outerjoin(PoolRow, PoolRow.id == PendingWorkloadRow.pool_id)
                 .order_by(PendingWorkloadRow.id))
            if project is not None:
                q = q.where(PendingWorkloadRow.project_id == self._project(s, project).id)
            return [_record(r, p, pool) for r, p, pool in s.execute(q).all()]

        return self._read(tx)

    def cancel(self, project: str, name: str) -> None:
        def tx(s: Session) -> None:
            pid = self._project(s, project).id
            r = s.execute(delete(PendingWorkloadRow).where(PendingWorkloadRow.project_id == pid,
                                                           PendingWorkloadRow.name == name))
            if r.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFoundError(f"no request for {name!r} waits in project {project!r}")
            self._event(s, "queue.cancelled", f"workload/{project}/{name}",
                        f"queued request for {name} cancelled", project=project)

        self._write(tx)
        self.publish_depth()

    def set_discipline(self, pool: str, discipline: str) -> str:
        check_discipline(discipline)

        def tx(s: Session) -> str:
            p = self._pool(s, pool)
            s.execute(update(PoolRow).where(PoolRow.id == p.id).values(queue_discipline=discipline))
            self._event(s, "pool.queue_discipline", f"pool/{pool}", f"pool {pool}: queue discipline "
                        f"{discipline}", data={"discipline": discipline})
            return discipline

        return self._write(tx)

    def depth(self) -> dict[str, int]:
        rows = self._read(lambda s: s.execute(select(PendingWorkloadRow.priority_class, func.count())
                                              .group_by(PendingWorkloadRow.priority_class)).all())
        got = {str(c): int(n) for c, n in rows}
        return {c: got.get(c, 0) for c in PRIORITY_CLASSES}

    def publish_depth(self, depth: dict[str, int] | None = None) -> dict[str, int]:
        """Set the gauge from the store's depth (or `depth`) where it differs from what this
        service last set (an empty queue costs nothing and leaves the gauge alone)."""
        d = self.depth() if depth is None else depth
        for c, n in d.items():
            if self._published.get(c) != n:
                QUEUE_DEPTH.labels(priority_class=c).set(n)
                self._published[c] = n
        return d

    # ---- drain -----------------------------------------------------------------------------------
    def drain(self) -> DrainResult:
        """One pass: every pool's waiting requests in its discipline's order, each tried once."""
        with self._drain_lock:
            placed: list[str] = []
            dropped: list[str] = []
            queues = self._queues()
            if not queues:  # the usual tick: one query
                self.publish_depth(dict.fromkeys(PRIORITY_CLASSES, 0))
                return DrainResult([], [], 0)
            if self.power_sync is not None:
                self.power_sync()
            for rows, discipline, pool_id in queues:
                for i in self._ordered(rows, discipline, pool_id):
                    r = rows[i]
                    key = f"{r['project']}/{r['name']}"
                    try:
                        self.workloads.create_workload(r["project"], r["name"], **r["request"])
                    except NoValidHostError as e:
                        self._write(partial(self._note_attempt, pid=r["id"], why=e.message))
                        continue
                    except PoolvisorError as e:  # refused for good (or the name was taken): drop it
                        if e.status_code >= 500:
                            self._write(partial(self._note_attempt, pid=r["id"], why=e.message))
                            continue
                        self._write(partial(self._remove, r=r, kind="queue.dropped",
                                            why=f"dropped: {e.message}"))
                        dropped.append(key)
                        continue
                    self._write(partial(self._remove, r=r, kind="workload.dequeued",
                                        why="created from the queue"))
                    placed.append(key)
            waiting = sum(self.publish_depth().values())
            return DrainResult(placed, dropped, waiting)

    def _queues(self) -> list[tuple[list[dict[str, Any]], str, int | None]]:
        def tx(s: Session) -> list[tuple[list[dict[str, Any]], str, int | None]]:
            rows = s.execute(select(PendingWorkloadRow, ProjectRow.name)
                             .join(ProjectRow, ProjectRow.id == PendingWorkloadRow.project_id)
                             .order_by(PendingWorkloadRow.id)).all()
            disc = dict(s.execute(select(PoolRow.id, PoolRow.queue_discipline)).all())
            by_pool: dict[int | None, list[dict[str, Any]]] = {}
            for r, project in rows:
                by_pool.setdefault(r.pool_id, []).append({
                    "id": r.id, "project": project, "project_id": r.project_id, "name": r.name,
                    "class": r.priority_class, "duration": r.duration_s, "demand": dict(r.demand),
                    "request": dict(r.request)})
            return [(v, str(disc.get(k, "priority")) if k is not None else "priority", k)
                    for k, v in by_pool.items()]

        return self._read(tx)

    def _ordered(self, rows: list[dict[str, Any]], discipline: str, pool_id: int | None) -> list[int]:
        """The discipline's order over these rows, with the pool's capacity and each project's
        allocation, running workloads and weight (what drf and ps-n weigh)."""
        resources = sorted({k for r in rows for k in r["demand"]})
        projects = sorted({r["project_id"] for r in rows})
        code = {p: i for i, p in enumerate(projects)}
        capacity, usage, running = np.ones(len(resources)), np.zeros((len(projects), len(resources))), \
            np.zeros(len(projects))
        weights = np.ones(len(projects))
        if discipline in ("drf", "ps-n"):
            capacity, usage, running = self._read(
                lambda s: _pool_figures(s, pool_id, resources, projects))
        if discipline == "drf":  # each project's fair-share weight (project set-weight)
            got = dict(self._read(lambda s: s.execute(select(ProjectRow.id, ProjectRow.weight)
                                                      .where(ProjectRow.id.in_(projects))).all()))
            weights = np.array([float(got.get(p, 1.0)) for p in projects])
        p = Pending(np.array([r["id"] for r in rows]), np.array([code[r["project_id"]] for r in rows]),
                    np.array([class_rank(r["class"]) for r in rows]),
                    np.array([[float(r["demand"].get(k, 0.0)) for k in resources] for r in rows]
                             ).reshape(len(rows), len(resources)),
                    np.array([np.nan if r["duration"] is None else r["duration"] for r in rows], dtype=float))
        ranked = queueing.order(discipline, p, capacity=capacity, usage=usage, running=running,
                                weights=weights)
        return [int(i) for i in ranked]

    def _note_attempt(self, s: Session, pid: int, why: str) -> None:
        s.execute(update(PendingWorkloadRow).where(PendingWorkloadRow.id == pid)
                  .values(attempts=PendingWorkloadRow.attempts + 1, last_error=why[:2000]))

    def _remove(self, s: Session, r: dict[str, Any], kind: str, why: str) -> None:
        s.execute(delete(PendingWorkloadRow).where(PendingWorkloadRow.id == r["id"]))
        self._event(s, kind, f"workload/{r['project']}/{r['name']}",
                    f"queued request for {r['name']} {why}", project=r["project"], data={"class": r["class"]},
                    severity="warning" if kind == "queue.dropped" else None)


def _pool_figures(s: Session, pool_id: int | None, resources: list[str], projects: list[int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pool's capacity per resource, each project's allocations there and running workloads."""
    col = {r: i for i, r in enumerate(resources)}
    code = {p: i for i, p in enumerate(projects)}
    in_pool = (HostRow.pool_id == pool_id) if pool_id is not None else HostRow.pool_id.is_(None)
    cap = np.zeros(len(resources))
    for r, c in s.execute(select(HostResourceRow.resource, func.sum(HostResourceRow.capacity
                                                                  * HostResourceRow.overcommit))
                          .join(HostRow, HostRow.id == HostResourceRow.host_id).where(in_pool)
                          .group_by(HostResourceRow.resource)).all():
        if r in col:
            cap[col[r]] = float(c or 0.0)
    usage = np.zeros((len(projects), len(resources)))
    total = func.sum(AllocationRow.amount)
    for p, r, a in s.execute(select(WorkloadRow.project_id, AllocationRow.resource, total)
                             .join(WorkloadRow, WorkloadRow.id == AllocationRow.workload_id)
                             .join(HostRow, HostRow.id == AllocationRow.host_id)
                             .where(in_pool, WorkloadRow.project_id.in_(projects))
                             .group_by(WorkloadRow.project_id, AllocationRow.resource)).all():
        if r in col:
            usage[code[p], col[r]] = float(a or 0.0)
    running = np.zeros(len(projects))
    for p, n in s.execute(select(WorkloadRow.project_id, func.count())
                          .join(HostRow, HostRow.id == WorkloadRow.host_id)
                          .where(in_pool, WorkloadRow.project_id.in_(projects),
                                 WorkloadRow.state.in_(HOLDING_STATES))
                          .group_by(WorkloadRow.project_id)).all():
        running[code[p]] = n
    return cap, usage, running


def _record(r: PendingWorkloadRow, project: str, pool: str | None) -> PendingRecord:
    return PendingRecord(r.id, project, r.name, pool, r.priority_class, r.duration_s,
                         {str(k): float(v) for k, v in r.demand.items()}, r.attempts, r.last_error,
                         as_utc(r.created_at))


class QueueLoop:
    """`poolvisor serve`'s queue: drain every `interval` seconds (a BackgroundLoop: its own
    WallClock and daemon thread), only while `is_leader()` (a replica that is not the leader
    leaves it to the one that is; True by default). A failing pass is tried again at the next tick."""

    def __init__(self, queue: QueueService, interval: float = DEFAULT_INTERVAL_S,
                 is_leader: Callable[[], bool] | None = None) -> None:
        self.queue = queue
        self.runner = BackgroundLoop("queue", self._step, interval, is_leader=is_leader, what="queue pass",
                                     log=log)
        self.clock, self.loop = self.runner.clock, self.runner.loop

    def _step(self, _t: float) -> None:
        res = self.queue.drain()
        if res.placed or res.dropped:
            log.info("queue: placed %s; dropped %s; %d waiting", res.placed, res.dropped, res.waiting)

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()
