"""Sim admin extension (admin only): fault injection on sim hosts, under /v1/sim.

Not part of the default API: `create_app(..., sim_admin=True)` mounts it, which `poolvisor serve
--demo` and `poolvisor serve --sim-admin` do. Hosts run by another driver are refused (409).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from poolvisor.api.auth import Admin, SvcDep
from poolvisor.api.errors import errors
from poolvisor.api.fields import INTEGRAL, Name, NamePath, StrictModel
from poolvisor.api.schemas import HostOut

router = APIRouter(prefix="/v1/sim", tags=["sim admin"])


class FaultIn(StrictModel):
    operation: Name = Field(description="sim operation to fail: create, start, stop, suspend, resume, "
                            "delete, migrate, fence, snapshot, restore")
    host: Name | None = Field(default=None, description="only on this host (omitted: any host of the "
                              "default sim)")
    times: Annotated[int, Field(ge=1, le=1_000_000), INTEGRAL] = 1


class FaultOut(StrictModel):
    operation: str
    host: str | None
    times: int


@router.post("/hosts/{name}/fail", response_model=HostOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def fail_host(name: NamePath, svc: SvcDep, _: Admin) -> HostOut:
    """The sim host dies: it stops answering heartbeats and its workloads are lost."""
    return HostOut.model_validate(svc.sim.fail_host(name))


@router.post("/hosts/{name}/revive", response_model=HostOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def revive_host(name: NamePath, svc: SvcDep, _: Admin) -> HostOut:
    """The sim host comes back empty and is up again."""
    return HostOut.model_validate(svc.sim.revive_host(name))


@router.post("/hosts/{name}/partition", response_model=HostOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def partition_host(name: NamePath, svc: SvcDep, _: Admin) -> HostOut:
    """Cut the sim host's management network: alive, guests running, no heartbeat (HA fences it)."""
    return HostOut.model_validate(svc.sim.partition(name, True))


@router.post("/hosts/{name}/heal", response_model=HostOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def heal_host(name: NamePath, svc: SvcDep, _: Admin) -> HostOut:
    """Heal the sim host's management network (a partition ends)."""
    return HostOut.model_validate(svc.sim.partition(name, False))


@router.post("/faults", status_code=201, response_model=FaultOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def inject_fault(body: FaultIn, svc: SvcDep, _: Admin) -> Any:
    """Make the next `times` sim operations `operation` fail (503 driver_error for their caller)."""
    return FaultOut.model_validate(svc.sim.inject(body.operation, body.host, body.times))
