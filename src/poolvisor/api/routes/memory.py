"""Memory pools: overcommit per pool, reservations per workload, balloon reclaim, fragmentation."""

from __future__ import annotations

from fastapi import APIRouter

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.fields import NamePath
from poolvisor.api.memory_schemas import (
    HostReclaimOut,
    MemoryOvercommit,
    MemoryOvercommitOut,
    MemoryReclaimRequest,
    MemoryReportOut,
    MemoryReservation,
    MemoryReservationOut,
)
from poolvisor.api.routes.storage import ProjectQ
from poolvisor.api.routes.workloads import locate_workload

router = APIRouter(tags=["memory"])


@router.get("/v1/pools/{name}/memory-report", response_model=MemoryReportOut,
            responses=errors(401, 404, 422, 503))
def memory_report(name: NamePath, svc: SvcDep, _: Who) -> MemoryReportOut:
    """Free capacity stranded on hosts where no flavor fits (by resource), how many of each flavor
    still fit and the largest that does; the pool's memory: physical, allocatable, allocated,
    reserved and ballooned away."""
    return MemoryReportOut.model_validate(svc.memory.report(name))


@router.put("/v1/pools/{name}/memory-overcommit", response_model=MemoryOvercommitOut,
            responses=errors(401, 403, 404, 409, 413, 422, 503))
def set_memory_overcommit(name: NamePath, body: MemoryOvercommit, svc: SvcDep,
                          _: Admin) -> MemoryOvercommitOut:
    """One memory overcommit ratio for every host of the pool (409 below what a host has allocated)."""
    changed = svc.memory.set_overcommit(name, body.ratio)
    return MemoryOvercommitOut(pool=name, ratio=body.ratio, changed=changed)


@router.post("/v1/pools/{name}/memory-reclaim", response_model=list[HostReclaimOut],
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def memory_reclaim(name: NamePath, svc: SvcDep, _: Admin,
                   body: MemoryReclaimRequest | None = None) -> list[HostReclaimOut]:
    """One balloon round: on hosts above the threshold, reclaim unused memory (least recently
    active guests first, never below a reservation or working set) down to the target; on hosts
    below the target, give memory back. 409 when a host's driver has no balloon."""
    req = body or MemoryReclaimRequest()
    got = svc.memory.reclaim(name, high=req.threshold, low=req.threshold * req.target_ratio)
    return [HostReclaimOut.model_validate(r) for r in got]


@router.put("/v1/workloads/{name}/memory-reservation", response_model=MemoryReservationOut,
            responses=errors(401, 404, 409, 413, 422, 503))
def reserve_memory(name: NamePath, body: MemoryReservation, svc: SvcDep, who: Who,
                   project: ProjectQ = None) -> MemoryReservationOut:
    """Memory of the workload never reclaimed nor overcommitted: 409 above its demand or when the
    host's reservations would exceed its physical memory."""
    where = locate_workload(svc, who, name, project)
    return MemoryReservationOut(project=where, workload=name,
                                reserved_mib=svc.memory.set_reservation(where, name, body.mib))
