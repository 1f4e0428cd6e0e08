"""Memory pools: overcommit per pool, reservations per workload, balloon reclaim, fragmentation.

* Overcommit: a pool's hosts get one memory overcommit ratio (their `memory_mib` allocatable is
  capacity x ratio); lowering it below what is allocated is refused.
* Reservations: a workload's reserved memory is never reclaimed and never overcommitted: the
  reservations on a host sum to at most its physical memory (checked when set).
* Reclaim (`reclaim`): per up host, the balloon targets of policies/memory/balloon.py from what
  the driver's balloon reports (balloon size, working set, last activity) and the reservations;
  the driver resizes the balloons, the store keeps what each guest was granted, and an event per
  host records what was reclaimed or given back. The sim driver models the balloon
  (drivers/balloon.py), libvirt resizes the guest's virtio balloon. Hosts whose driver has no
  balloon (LXC) are left out of a round; a round where no host with guests has one answers 409.
* Report (`report`): free capacity stranded where no flavor fits, by resource, how many of each
  flavor still fit and the largest that does (policies/memory/fragmentation.py), with the
  memory figures (physical, allocatable, allocated, reserved, granted).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.domain.text import check_name
from poolvisor.drivers.balloon import MEMORY
from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.protocols import Balloon, Capability, supports
from poolvisor.policies.memory.balloon import balloon_targets
from poolvisor.policies.memory.fragmentation import fragmentation
from poolvisor.services.base import ServiceBase
from poolvisor.services.records import RUNNING
from poolvisor.services.references import flush_referring
from poolvisor.store.rows import (
    FlavorRow,
    HostResourceRow,
    HostRow,
    MemoryStateRow,
    PoolRow,
    ProjectRow,
    WorkloadRow,
)

T = TypeVar("T")
MAX_RATIO = 100.0
MIN_CHANGE_MIB = 1.0  # balloon changes below this are not worth a driver call


@dataclass(frozen=True)
class GuestChange:
    workload: str  # project/name
    before_mib: float
    after_mib: float
    floor_mib: float


@dataclass(frozen=True)
class HostReclaim:
    host: str
    capacity_mib: float
    pressure_before: float
    pressure_after: float
    reclaimed_mib: float
    returned_mib: float
    overflow_mib: float  # floors above physical memory: the host cannot back them
    changes: list[GuestChange] = field(default_factory=list)


@dataclass(frozen=True)
class FlavorFit:
    flavor: str
    fits: int


@dataclass(frozen=True)
class MemoryReport:
    pool: str
    hosts: int
    memory_overcommit: dict[str, float]  # ratio -> hosts with it (as text keys)
    memory: dict[str, float]  # physical, allocatable, allocated, reserved, granted (MiB)
    free: dict[str, float]  # by resource, over up hosts
    stranded: dict[str, float]  # by resource, on hosts where no flavor fits
    stranded_hosts: int
    flavors: list[FlavorFit]
    largest_flavor: str | None


def _ratio(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < float(v) <= MAX_RATIO or v != v:
        raise InvalidInputError(f"{what} must be a number > 0 and <= {MAX_RATIO:g}")
    return float(v)


class MemoryService(ServiceBase):
    """Memory pooling use cases (see the module docstring)."""

    def _balloon(self, host: str) -> Balloon:
        """The host's driver as a balloon (409 unsupported_by_driver when it cannot balloon)."""
        return self.ctx.drivers.balloon(host)

    # ---- overcommit and reservations ---------------------------------------------------------
    def set_overcommit(self, pool: str, ratio: float) -> list[str]:
        """Every host of the pool gets memory overcommit `ratio`; returns the hosts changed."""
        check_name("pool", pool)
        r = _ratio(ratio, "memory overcommit")

        def tx(s: Session) -> list[str]:
            p = ServiceBase._one(s, PoolRow, "pool", pool)
            q = (
                select(HostRow, HostResourceRow)
                .join(HostResourceRow, HostResourceRow.host_id == HostRow.id)
                .where(HostRow.pool_id == p.id, HostResourceRow.resource == MEMORY)
                .order_by(HostRow.name)
            )
            changed = []
            for h, res in s.execute(q).all():
                if res.allocated > res.capacity * r + 1e-9:
                    raise ConflictError(
                        f"host {h.name!r} has {res.allocated:g} MiB allocated; overcommit "
                        f"{r:g} allows {res.capacity * r:g}"
                    )
                if res.overcommit != r:
                    res.overcommit = r
                    h.generation += 1  # placement caches reload the host
                    changed.append(h.name)
            ServiceBase._event(
                s,
                "pool.memory-overcommit",
                f"pool/{pool}",
                f"pool {pool}: memory overcommit {r:g} ({len(changed)} hosts changed)",
                data={"ratio": r, "hosts": changed},
            )
            return changed

        changed = self._write(tx)
        # placement caches reload a moved host's allocations, not its capacity: rebuild this
        # process's (another process sees the new ratio at its next full load; the ledger's
        # guarded UPDATE, which reads the stored ratio, stays the authority meanwhile)
        self.ctx.cache.invalidate()
        return changed

    def set_reservation(self, project: str, workload: str, mib: float) -> float:
        """Reserve `mib` of the workload's memory (0 clears it); <= its demand, and the host's
        reservations stay within its physical memory."""
        check_name("project", project)
        check_name("workload", workload)
        if isinstance(mib, bool) or not isinstance(mib, int | float) or not 0 <= float(mib) < float("inf"):
            raise InvalidInputError("reservation must be a finite number >= 0 (MiB)")

        def tx(s: Session) -> float:
            pr = ServiceBase._one(s, ProjectRow, "project", project)
            w = s.scalars(select(WorkloadRow).filter_by(project_id=pr.id, name=workload)).first()
            if w is None:
                raise NotFoundError(f"workload {workload!r} not found in project {project!r}")
            demand = float(w.demand.get(MEMORY, 0.0))
            if mib > demand:
                raise ConflictError(
                    f"workload {workload!r} has {demand:g} MiB of memory; cannot reserve {mib:g}"
                )
            if w.host_id is not None and mib > 0:
                h = s.get(HostRow, w.host_id)
                assert h is not None
                h.generation += 1  # serializes reservations on the host (row lock)
                cap = s.scalars(
                    select(HostResourceRow.capacity).filter_by(host_id=h.id, resource=MEMORY)
                ).first()
                others = sum(
                    float(x)
                    for x in s.scalars(
                        select(MemoryStateRow.reserved_mib)
                        .join(WorkloadRow, WorkloadRow.id == MemoryStateRow.workload_id)
                        .where(WorkloadRow.host_id == h.id, WorkloadRow.id != w.id)
                    )
                )
                if cap is not None and others + mib > cap + 1e-9:
                    raise ConflictError(
                        f"host {h.name!r} has {cap:g} MiB of memory and {others:g} reserved; "
                        f"reservations are never overcommitted"
                    )
            st = s.get(MemoryStateRow, w.id)
            if st is None:
                st = MemoryStateRow(workload_id=w.id, reserved_mib=0.0)
                s.add(st)
            st.reserved_mib = float(mib)
            flush_referring(s, f"workload {workload!r} was deleted meanwhile")
            ServiceBase._event(
                s,
                "workload.memory-reserved",
                f"workload/{project}/{workload}",
                f"workload {workload}: {mib:g} MiB of memory reserved",
                project=project,
            )
            return float(mib)

        return self._write(tx)

    # ---- reclaim -----------------------------------------------------------------------------
    def reclaim(self, pool: str | None = None, *, high: float = 0.9, low: float = 0.8) -> list[HostReclaim]:
        """One balloon round over the (pool's) up hosts; returns what changed per host."""
        if pool is not None:
            check_name("pool", pool)
        if not (isinstance(high, int | float) and isinstance(low, int | float)) or not 0 < low <= high <= 1:
            raise InvalidInputError("need 0 < low <= high <= 1")
        hosts = self._read(lambda s: self._guests(s, pool))
        out = []
        cannot = []  # hosts with guests whose driver has no balloon (LXC containers...): left out
        for host, cap, guests in hosts:
            if not guests:
                continue
            if not supports(self.ctx.drivers.driver_of(host), Capability.BALLOON):
                cannot.append(host)
                continue
            balloon = self._balloon(host)
            mem = [balloon.guest_memory(host, g[1]) for g in guests]
            demand = np.array([float(g[1].demand.get(MEMORY, 0.0)) for g in guests])
            reserved = np.array([g[2] for g in guests])
            t = balloon_targets(
                demand,
                [m.balloon_mib for m in mem],
                [m.working_set_mib for m in mem],
                reserved,
                [m.last_active for m in mem],
                cap,
                high,
                low,
            )
            changes = []
            floor = np.minimum(
                demand, np.maximum(reserved, np.minimum([m.working_set_mib for m in mem], demand))
            )
            for (wid, wl, _r), m, new, fl in zip(guests, mem, t.granted, floor, strict=True):
                if abs(new - m.balloon_mib) >= MIN_CHANGE_MIB:
                    got = balloon.set_memory(host, wl, float(new))
                    changes.append((wid, GuestChange(wl.key, m.balloon_mib, got, float(fl)), m.last_active))
            rec = HostReclaim(
                host,
                cap,
                t.pressure_before,
                t.pressure_after,
                t.reclaimed,
                t.returned,
                t.overflow,
                [c[1] for c in changes],
            )
            if changes or t.overflow > 0:
                self._write(lambda s, rec=rec, changes=changes: self._record(s, rec, changes))  # type: ignore[misc]
            out.append(rec)
        if cannot and not out:
            self._balloon(cannot[0])  # nothing here can balloon: 409 unsupported_by_driver
        return out

    def _guests(
        self, s: Session, pool: str | None
    ) -> list[tuple[str, float, list[tuple[int, DriverWorkload, float]]]]:
        q = (
            select(HostRow.id, HostRow.name, HostResourceRow.capacity)
            .join(HostResourceRow, HostResourceRow.host_id == HostRow.id)
            .where(HostRow.state == "up", HostResourceRow.resource == MEMORY)
            .order_by(HostRow.name)
        )
        if pool is not None:
            q = q.where(HostRow.pool_id == ServiceBase._one(s, PoolRow, "pool", pool).id)
        hosts = s.execute(q).all()
        if not hosts:
            return []
        by_host: dict[int, list[tuple[int, DriverWorkload, float]]] = defaultdict(list)
        projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
        wq = (  # the columns a DriverWorkload needs, not ORM rows (every round reads every guest)
            select(WorkloadRow.id, WorkloadRow.host_id, WorkloadRow.project_id, WorkloadRow.name,
                   WorkloadRow.kind, WorkloadRow.demand, WorkloadRow.resource_spec,
                   MemoryStateRow.reserved_mib)
            .outerjoin(MemoryStateRow, MemoryStateRow.workload_id == WorkloadRow.id)
            .where(WorkloadRow.host_id.in_([h.id for h in hosts]), WorkloadRow.state == RUNNING)
            .order_by(WorkloadRow.id)
        )
        for w in s.execute(wq).all():
            reserved = w.reserved_mib
            if w.host_id is not None and float(w.demand.get(MEMORY, 0.0)) > 0:
                by_host[w.host_id].append(
                    (w.id, ServiceBase._driver_workload(projects[w.project_id], w), float(reserved or 0.0))
                )
        return [(h.name, float(h.capacity), by_host[h.id]) for h in hosts]

    @staticmethod
    def _record(s: Session, rec: HostReclaim, changes: list[tuple[int, GuestChange, float]]) -> None:
        for wid, c, active in changes:
            if s.get(WorkloadRow, wid) is None:
                continue  # deleted meanwhile
            st = s.get(MemoryStateRow, wid)
            if st is None:
                st = MemoryStateRow(workload_id=wid, reserved_mib=0.0)
                s.add(st)
            st.granted_mib = c.after_mib
            st.last_active = datetime.fromtimestamp(active, UTC) if active > 0 else None
        kind = "memory.reclaimed" if rec.reclaimed_mib >= rec.returned_mib else "memory.returned"
        ServiceBase._event(
            s,
            kind,
            f"host/{rec.host}",
            f"host {rec.host}: memory pressure {rec.pressure_before:.0%} -> {rec.pressure_after:.0%}, "
            f"{rec.reclaimed_mib:g} MiB reclaimed, {rec.returned_mib:g} MiB given back"
            + (f", {rec.overflow_mib:g} MiB the host cannot back" if rec.overflow_mib > 0 else ""),
            data={
                "reclaimed_mib": rec.reclaimed_mib,
                "returned_mib": rec.returned_mib,
                "pressure_before": rec.pressure_before,
                "pressure_after": rec.pressure_after,
                "overflow_mib": rec.overflow_mib,
                "guests": {c.workload: [c.before_mib, c.after_mib] for _, c, _ in changes},
            },
        )

    # ---- report ------------------------------------------------------------------------------
    def report(self, pool: str) -> MemoryReport:
        check_name("pool", pool)

        def tx(s: Session) -> MemoryReport:
            p = ServiceBase._one(s, PoolRow, "pool", pool)
            hosts = list(
                s.scalars(
                    select(HostRow).where(HostRow.pool_id == p.id, HostRow.state == "up").order_by(HostRow.id)
                )
            )
            res = (
                list(
                    s.scalars(
                        select(HostResourceRow).where(HostResourceRow.host_id.in_([h.id for h in hosts]))
                    )
                )
                if hosts
                else []
            )
            flavors = list(s.scalars(select(FlavorRow).order_by(FlavorRow.name)))
            names = sorted({r.resource for r in res})
            col = {n: i for i, n in enumerate(names)}
            row = {h.id: i for i, h in enumerate(hosts)}
            free = np.zeros((len(hosts), len(names)))
            cap = np.zeros_like(free)
            ratios: dict[str, float] = defaultdict(float)
            mem = {"physical": 0.0, "allocatable": 0.0, "allocated": 0.0}
            for r in res:
                free[row[r.host_id], col[r.resource]] = r.capacity * r.overcommit - r.allocated
                cap[row[r.host_id], col[r.resource]] = r.capacity
                if r.resource == MEMORY:
                    ratios[f"{r.overcommit:g}"] += 1
                    mem["physical"] += r.capacity
                    mem["allocatable"] += r.capacity * r.overcommit
                    mem["allocated"] += r.allocated
            # a flavor naming a resource no host has fits nowhere: it cannot make capacity useful
            known = [f for f in flavors if all(k in col or float(v) <= 0 for k, v in f.demand.items())]
            dem = np.array([[float(f.demand.get(n, 0.0)) for n in names] for f in known]).reshape(
                len(known), len(names)
            )
            fr = fragmentation(free, cap, dem)
            fit_of = {f.name: int(n) for f, n in zip(known, fr.fits, strict=True)}
            states = (
                s.execute(
                    select(MemoryStateRow.reserved_mib, MemoryStateRow.granted_mib, WorkloadRow.demand)
                    .join(WorkloadRow, WorkloadRow.id == MemoryStateRow.workload_id)
                    .where(WorkloadRow.host_id.in_(list(row)))
                ).all()
                if hosts
                else []
            )
            mem["reserved"] = sum(float(r) for r, _g, _d in states)
            mem["ballooned_away"] = sum(
                max(0.0, float(d.get(MEMORY, 0.0)) - float(g)) for _r, g, d in states if g is not None
            )
            return MemoryReport(
                pool,
                len(hosts),
                dict(ratios),
                mem,
                {n: float(fr.free[i]) for n, i in col.items()},
                {n: float(fr.stranded[i]) for n, i in col.items()},
                fr.stranded_hosts,
                [FlavorFit(f.name, fit_of.get(f.name, 0)) for f in flavors],
                known[fr.largest].name if fr.largest is not None else None,
            )

        return self._read(tx)


def memory_violations(s: Session) -> list[str]:
    """Reservations never overcommitted: on each host they sum to at most its physical memory,
    and each is at most its workload's memory demand."""
    v: list[str] = []
    cap = dict(
        s.execute(
            select(HostResourceRow.host_id, HostResourceRow.capacity).where(
                HostResourceRow.resource == MEMORY
            )
        ).all()
    )
    per_host: dict[int, float] = defaultdict(float)
    q = select(MemoryStateRow.reserved_mib, WorkloadRow).join(
        WorkloadRow, WorkloadRow.id == MemoryStateRow.workload_id
    )
    for reserved, w in s.execute(q).all():
        if reserved > float(w.demand.get(MEMORY, 0.0)) + 1e-6:
            v.append(f"workload {w.name}: {reserved:g} MiB reserved, more than its memory")
        if w.host_id is not None:
            per_host[w.host_id] += float(reserved)
    names = dict(s.execute(select(HostRow.id, HostRow.name)).all())
    for h, total in per_host.items():
        if total > float(cap.get(h, 0.0)) + 1e-6:
            v.append(f"host {names.get(h, h)}: {total:g} MiB reserved on {cap.get(h, 0.0):g} MiB of memory")
    return v
