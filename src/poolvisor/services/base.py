"""Shared plumbing of the domain services: lookups that raise NotFoundError, events, record builders.

ServiceBase is plumbing only (no use case): each domain service extends it once and is built on
the shared ServiceContext (context.py), whose parts it reads through the properties below.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.pool import DriverPool
from poolvisor.observability.instruments import note_event
from poolvisor.observability.severity import check_severity, severity_of
from poolvisor.policies.placement import PlacementPolicy
from poolvisor.services.context import ServiceContext
from poolvisor.services.gpus import host_devices, workload_shares
from poolvisor.services.leases import Leases
from poolvisor.services.placement_cache import PlacementCache
from poolvisor.services.records import HostRecord, WorkloadRecord
from poolvisor.services.usage import measured_use
from poolvisor.store.engine import Store
from poolvisor.store.prepared import Prepared
from poolvisor.store.retry import Stale
from poolvisor.store.rows import (
    EventRow,
    FlavorRow,
    GroupRow,
    HostResourceRow,
    HostRow,
    PoolRow,
    ProjectRow,
    WorkloadRow,
)

T = TypeVar("T")
_INSERT_EVENT = Prepared(insert(cast(Table, EventRow.__table__)),
                         keys=("kind", "subject", "message", "project", "data", "severity"))


def as_utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class ServiceBase:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def drivers(self) -> DriverPool:
        """The driver of each host: `drivers.lifecycle(host)` etc. (409 if it lacks the capability)."""
        return self.ctx.drivers

    @property
    def cache(self) -> PlacementCache:
        return self.ctx.cache

    @property
    def policy(self) -> PlacementPolicy:
        return self.ctx.policy

    @property
    def leases(self) -> Leases:
        return self.ctx.leases

    def _read(self, fn: Callable[[Session], T]) -> T:
        return self.ctx.read(fn)

    def _write(self, fn: Callable[[Session], T]) -> T:
        return self.ctx.write(fn)

    # ---- lookups -----------------------------------------------------------------------------
    @staticmethod
    def _one(s: Session, row: type[T], what: str, name: str, **extra: Any) -> T:
        q = select(row).filter_by(name=name, **extra)
        found = s.scalars(q).first()
        if found is None:
            raise NotFoundError(f"{what} {name!r} not found")
        return found

    def _pool(self, s: Session, name: str) -> PoolRow:
        return self._one(s, PoolRow, "pool", name)

    def _host(self, s: Session, name: str) -> HostRow:
        return self._one(s, HostRow, "host", name)

    def _project(self, s: Session, name: str) -> ProjectRow:
        return self._one(s, ProjectRow, "project", name)

    def _project_id(self, s: Session, name: str, *, may_create: bool) -> int | None:
        """The project's id; None when it does not exist yet but may be created (by the write
        that succeeds: see _create_project_in), NotFoundError otherwise."""
        pid = s.scalars(select(ProjectRow.id).filter_by(name=name)).first()
        if pid is None and not may_create:
            raise NotFoundError(f"project {name!r} not found")
        return pid

    def _create_project_in(self, s: Session, name: str) -> int:
        """The project's id, creating it (with its event) inside the caller's transaction, so a
        request that fails or is a dry run leaves no project behind. Stale if created meanwhile."""
        pid = s.scalars(select(ProjectRow.id).filter_by(name=name)).first()
        if pid is not None:
            return pid
        row = ProjectRow(name=name)
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise Stale() from None  # created concurrently: the retry finds it
        self._event(s, "project.created", f"project/{name}", f"project {name} created", project=name)
        return row.id

    def _flavor(self, s: Session, name: str) -> FlavorRow:
        return self._one(s, FlavorRow, "flavor", name)

    def _workload(self, s: Session, project: str, name: str) -> tuple[WorkloadRow, ProjectRow]:
        p = self._project(s, project)
        w = s.scalars(select(WorkloadRow).filter_by(project_id=p.id, name=name)).first()
        if w is None:
            raise NotFoundError(f"workload {name!r} not found in project {project!r}")
        return w, p

    def _workload_host(self, project: str, name: str, allowed: Iterable[str], verb: str) -> str:
        """The host a workload runs on, for an operation through that host's driver (snapshot,
        backup); 409 when its state is not one of `allowed` or it has no host."""
        def tx(s: Session) -> str:
            w, _p = self._workload(s, project, name)
            if w.state not in allowed or w.host_id is None:
                raise ConflictError(f"cannot {verb} workload {name!r} in state {w.state}")
            h = s.get(HostRow, w.host_id)
            assert h is not None
            return h.name

        return self._read(tx)

    # ---- events ------------------------------------------------------------------------------
    @staticmethod
    def _event(s: Session, kind: str, subject: str, message: str, project: str | None = None,
               data: dict[str, Any] | None = None, severity: str | None = None) -> None:
        """Record an event in the use case's transaction (severity: from the kind by default)."""
        # a prepared INSERT (store/prepared.py), not an ORM object for the flush: every create writes
        # two; sent with the transaction's other events when it defers them (the writer's groups)
        _INSERT_EVENT.later(s, {
            "kind": kind, "subject": subject, "message": message, "project": project, "data": data or {},
            "severity": check_severity(severity) if severity is not None else severity_of(kind)})
        note_event(s, kind)  # counted for /metrics when the transaction commits

    # ---- records -----------------------------------------------------------------------------
    @staticmethod
    def _host_records(s: Session, hosts: Iterable[HostRow]) -> list[HostRecord]:
        hosts = list(hosts)
        if not hosts:
            return []
        pools = dict(s.execute(select(PoolRow.id, PoolRow.name)).all())
        res: dict[int, list[HostResourceRow]] = defaultdict(list)
        q = select(HostResourceRow).where(HostResourceRow.host_id.in_([h.id for h in hosts]))
        for r in s.scalars(q.order_by(HostResourceRow.resource)):
            res[r.host_id].append(r)
        use = measured_use(s, [h.id for h in hosts])
        gpus = host_devices(s, [h.id for h in hosts])
        out = []
        for h in hosts:
            rows = res[h.id]
            u = use[h.id]
            out.append(HostRecord(
                name=h.name, pool=pools.get(h.pool_id) if h.pool_id is not None else None, state=h.state,
                capacity={r.resource: r.capacity for r in rows},
                overcommit={r.resource: r.overcommit for r in rows},
                allocated={r.resource: r.allocated for r in rows},
                free={r.resource: r.capacity * r.overcommit - r.allocated for r in rows},
                labels={str(k): str(v) for k, v in h.labels.items()}, domain=h.domain,
                max_workloads=h.max_workloads, workloads=h.workloads, generation=h.generation,
                driver=h.driver, uri=h.uri, fence=h.fence,
                allocatable={r.resource: r.capacity * r.overcommit for r in rows},
                used=u.used, used_at=u.at, measured_workloads=u.measured, running_workloads=u.running,
                gpus=gpus.get(h.id, []),
            ))
        return out

    @staticmethod
    def _workload_records(s: Session, rows: Iterable[WorkloadRow]) -> list[WorkloadRecord]:
        rows = list(rows)
        if not rows:
            return []
        project_ids = {w.project_id for w in rows}
        projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)
                                  .where(ProjectRow.id.in_(project_ids))).all())
        host_ids = {w.host_id for w in rows if w.host_id is not None}
        hosts = dict(s.execute(select(HostRow.id, HostRow.name).where(HostRow.id.in_(host_ids)))
                     .all())
        group_ids = {w.group_id for w in rows if w.group_id is not None}
        groups = dict(s.execute(select(GroupRow.id, GroupRow.name).where(GroupRow.id.in_(group_ids)))
                      .all())
        gpus = workload_shares(s, [w.id for w in rows if "gpu" in w.demand])
        return [
            WorkloadRecord(
                name=w.name, project=projects[w.project_id], kind=w.kind, state=w.state,
                host=hosts.get(w.host_id) if w.host_id is not None else None,
                demand={str(k): float(v) for k, v in w.demand.items()}, priority=w.priority,
                group=groups.get(w.group_id) if w.group_id is not None else None,
                created_at=as_utc(w.created_at), explanation=w.explanation, gpus=gpus.get(w.id, []),
                priority_class=w.priority_class, state_reason=w.state_reason, resources=w.resource_spec,
            )
            for w in rows
        ]

    @staticmethod
    def _driver_workload(project: str, w: Any) -> DriverWorkload:  # a WorkloadRow, or a row of its columns
        return DriverWorkload(f"{project}/{w.name}", w.kind, {str(k): float(v) for k, v in w.demand.items()},
                              spec=w.resource_spec)
