"""Pools, flavors and projects: validation, uniqueness and referential checks."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.domain.models import MAX_NAME_LEN, check_name
from poolvisor.domain.resources import ResourceSet
from poolvisor.domain.text import check_text
from poolvisor.policies.queueing import check_weight
from poolvisor.services.base import ServiceBase
from poolvisor.services.gpus import check_gpu_demand
from poolvisor.services.placement_cache import resource_names
from poolvisor.services.records import (
    FlavorRecord,
    PoolRecord,
    ProjectRecord,
)
from poolvisor.services.references import delete_unused
from poolvisor.services.usage import Use, measured_use, stranded_by_pool
from poolvisor.store.rows import (
    FlavorRow,
    HostResourceRow,
    HostRow,
    PoolRow,
    ProjectRow,
    WorkloadRow,
)

MAX_LABELS = 64
MAX_DESCRIPTION = 1000


def check_labels(what: str, labels: dict[str, str] | None) -> dict[str, str]:
    """Labels are at most 64 pairs of 1..63-character strings."""
    labels = labels or {}
    if not isinstance(labels, dict):
        raise InvalidInputError(f"{what} must be a mapping of strings")
    if len(labels) > MAX_LABELS:
        raise InvalidInputError(f"{what}: at most {MAX_LABELS} labels")
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str) or not 1 <= len(k) <= MAX_NAME_LEN \
                or len(v) > MAX_NAME_LEN:
            raise InvalidInputError(
                f"{what}: keys and values must be strings of at most {MAX_NAME_LEN} characters")
        check_text(f"{what} key {k!r}", k)
        check_text(f"{what} {k!r}", v)
    return dict(labels)


def check_demand(res: ResourceSet, demand: dict[str, float] | None, what: str = "demand") -> dict[str, float]:
    """A validated demand with zero entries dropped; at least one resource must be requested."""
    if not isinstance(demand, dict):
        raise InvalidInputError(f"{what} must be a mapping of resource -> amount")
    vec = res.vector(demand)
    if not np.any(vec > 0):
        raise InvalidInputError(f"{what} must request a positive amount of at least one resource")
    return {n: float(v) for n, v in zip(res.names, vec, strict=True) if v > 0}


def flush_unique(s: Session, message: str) -> None:
    try:
        s.flush()
    except IntegrityError:
        raise ConflictError(message) from None


class CatalogService(ServiceBase):
    """Pools, flavors and projects."""

    # ---- pools -------------------------------------------------------------------------------
    def create_pool(self, name: str, description: str = "") -> PoolRecord:
        check_name("pool", name)
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidInputError(
                f"pool description must be a string of at most {MAX_DESCRIPTION} characters")
        check_text("pool description", description)

        def tx(s: Session) -> PoolRecord:
            if s.scalars(select(PoolRow.id).filter_by(name=name)).first() is not None:
                raise ConflictError(f"pool {name!r} already exists")
            s.add(PoolRow(name=name, description=description))
            flush_unique(s, f"pool {name!r} already exists")
            self._event(s, "pool.created", f"pool/{name}", f"pool {name} created")
            return self._pool_records(s, [name])[0]

        return self._write(tx)

    def list_pools(self) -> list[PoolRecord]:
        return self._read(lambda s: self._pool_records(s, None))

    def get_pool(self, name: str) -> PoolRecord:
        def tx(s: Session) -> PoolRecord:
            self._pool(s, name)
            return self._pool_records(s, [name])[0]

        return self._read(tx)

    def delete_pool(self, name: str) -> None:
        def tx(s: Session) -> None:
            p = self._pool(s, name)
            n = s.scalar(select(func.count()).select_from(HostRow).where(HostRow.pool_id == p.id))
            if n:
                raise ConflictError(f"pool {name!r} still has {n} hosts")
            delete_unused(s, p, "pool", name)
            self._event(s, "pool.deleted", f"pool/{name}", f"pool {name} deleted")

        self._write(tx)

    def _pool_records(self, s: Session, names: list[str] | None) -> list[PoolRecord]:
        q = select(PoolRow).order_by(PoolRow.name)
        if names is not None:
            q = q.where(PoolRow.name.in_(names))
        pools = list(s.scalars(q))
        counts = dict(s.execute(select(HostRow.pool_id, func.count()).group_by(HostRow.pool_id))
                      .all())
        cap: dict[int, dict[str, float]] = defaultdict(dict)
        alloc: dict[int, dict[str, float]] = defaultdict(dict)
        agg = (select(HostRow.pool_id, HostResourceRow.resource,
                      func.sum(HostResourceRow.capacity * HostResourceRow.overcommit),
                      func.sum(HostResourceRow.allocated))
               .join(HostRow, HostRow.id == HostResourceRow.host_id)
               .where(HostRow.pool_id.in_([p.id for p in pools]))
               .group_by(HostRow.pool_id, HostResourceRow.resource))
        for pid, res, c, a in s.execute(agg):
            if pid is None:
                continue
            cap[pid][res], alloc[pid][res] = float(c or 0), float(a or 0)
        members: dict[int, list[int]] = defaultdict(list)
        for hid, pid in s.execute(select(HostRow.id, HostRow.pool_id)
                                  .where(HostRow.pool_id.in_([p.id for p in pools]))):
            if pid is not None:
                members[pid].append(hid)
        use = measured_use(s, [h for hs in members.values() for h in hs])
        strand: dict[int, tuple[dict[str, float], list[str]]] = {}
        if members:  # the placement view: capacities and states as placement sees them
            with self.cache.lock:
                snap = self.cache.refresh(s)
                strand = stranded_by_pool(s, snap, list(members), tuple(self.policy.scarce))
        out = []
        for p in pools:
            u = Use.total([use[h] for h in members[p.id]])
            amounts, where = strand.get(p.id, ({}, []))
            out.append(PoolRecord(
                p.name, p.description, int(counts.get(p.id, 0)), dict(cap[p.id]), dict(alloc[p.id]),
                {r: cap[p.id][r] - alloc[p.id].get(r, 0.0) for r in cap[p.id]},
                allocatable=dict(cap[p.id]), used=u.used, used_at=u.at, measured_workloads=u.measured,
                running_workloads=u.running, stranded=amounts, stranded_hosts=where))
        return out

    # ---- flavors -----------------------------------------------------------------------------
    def create_flavor(self, name: str, demand: dict[str, float]) -> FlavorRecord:
        check_name("flavor", name)

        def tx(s: Session) -> FlavorRecord:
            d = check_demand(resource_names(s), demand, f"flavor {name} demand")
            check_gpu_demand(d)  # a fraction of one GPU or whole GPUs, as workloads ask
            if s.scalars(select(FlavorRow.id).filter_by(name=name)).first() is not None:
                raise ConflictError(f"flavor {name!r} already exists")
            s.add(FlavorRow(name=name, demand=d))
            flush_unique(s, f"flavor {name!r} already exists")
            self._event(s, "flavor.created", f"flavor/{name}", f"flavor {name} created", data={"demand": d})
            return FlavorRecord(name, d)

        return self._write(tx)

    def list_flavors(self) -> list[FlavorRecord]:
        return self._read(lambda s: [FlavorRecord(f.name, _floats(f.demand))
                                     for f in s.scalars(select(FlavorRow).order_by(FlavorRow.name))])

    def get_flavor(self, name: str) -> FlavorRecord:
        def tx(s: Session) -> FlavorRecord:
            f = self._flavor(s, name)
            return FlavorRecord(f.name, _floats(f.demand))

        return self._read(tx)

    def delete_flavor(self, name: str) -> None:
        def tx(s: Session) -> None:
            delete_unused(s, self._flavor(s, name), "flavor", name)  # workloads keep their own demand
            self._event(s, "flavor.deleted", f"flavor/{name}", f"flavor {name} deleted")

        self._write(tx)

    # ---- projects ----------------------------------------------------------------------------
    def create_project(self, name: str, weight: float | None = None) -> ProjectRecord:
        check_name("project", name)
        w = 1.0 if weight is None else check_weight(weight)

        def tx(s: Session) -> ProjectRecord:
            if s.scalars(select(ProjectRow.id).filter_by(name=name)).first() is not None:
                raise ConflictError(f"project {name!r} already exists")
            s.add(ProjectRow(name=name, weight=w))
            flush_unique(s, f"project {name!r} already exists")
            self._event(s, "project.created", f"project/{name}", f"project {name} created", project=name)
            return ProjectRecord(name, 0, w)

        return self._write(tx)

    def set_project_weight(self, name: str, weight: float) -> ProjectRecord:
        """The project's weight in the fair share of its class (the queue's drf discipline)."""
        w = check_weight(weight)

        def tx(s: Session) -> ProjectRecord:
            p = self._project(s, name)
            s.execute(update(ProjectRow).where(ProjectRow.id == p.id).values(weight=w))
            self._event(s, "project.weight", f"project/{name}", f"project {name}: fair-share weight {w:g}",
                        project=name, data={"weight": w})
            return self._project_records(s, name)[0]

        return self._write(tx)

    def list_projects(self) -> list[ProjectRecord]:
        return self._read(lambda s: self._project_records(s, None))

    def get_project(self, name: str) -> ProjectRecord:
        def tx(s: Session) -> ProjectRecord:
            self._project(s, name)
            return self._project_records(s, name)[0]

        return self._read(tx)

    @staticmethod
    def _project_records(s: Session, name: str | None) -> list[ProjectRecord]:
        q = (select(ProjectRow.name, func.count(WorkloadRow.id), ProjectRow.weight)
             .outerjoin(WorkloadRow, WorkloadRow.project_id == ProjectRow.id)
             .group_by(ProjectRow.id, ProjectRow.name, ProjectRow.weight).order_by(ProjectRow.name))
        if name is not None:
            q = q.where(ProjectRow.name == name)
        return [ProjectRecord(n, int(c), float(w)) for n, c, w in s.execute(q)]


def _floats(d: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in d.items()}

