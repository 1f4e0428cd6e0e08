"""Pools: named groups of hosts with their summed capacity (reads: any token; writes: admin)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.fields import NamePath
from poolvisor.api.schemas import ConsolidationOut, ConsolidationRequest, PoolCreate, PoolOut, TaskOut
from poolvisor.api.share_schemas import AllocationPolicyIn, AllocationPolicyOut

router = APIRouter(prefix="/v1/pools", tags=["pools"])


@router.get("", response_model=list[PoolOut], responses=errors(401, 503))
def list_pools(svc: SvcDep, _: Who) -> list[PoolOut]:
    return [PoolOut.model_validate(p) for p in svc.catalog.list_pools()]


@router.post("", status_code=201, response_model=PoolOut, responses=errors(401, 403, 409, 413, 422, 503))
def create_pool(body: PoolCreate, svc: SvcDep, _: Admin) -> PoolOut:
    return PoolOut.model_validate(svc.catalog.create_pool(body.name, body.description))


@router.get("/{name}", response_model=PoolOut, responses=errors(401, 404, 422, 503))
def get_pool(name: NamePath, svc: SvcDep, _: Who) -> PoolOut:
    return PoolOut.model_validate(svc.catalog.get_pool(name))


@router.delete("/{name}", status_code=204, responses=errors(401, 403, 404, 409, 422, 503))
def delete_pool(name: NamePath, svc: SvcDep, _: Admin) -> None:
    svc.catalog.delete_pool(name)


@router.post("/{name}/consolidation-plan", response_model=ConsolidationOut,
             responses={202: {"model": TaskOut, "description": "apply: the queued consolidate task"},
                        **errors(401, 403, 404, 409, 413, 422, 503)})
def consolidation_plan(name: NamePath, svc: SvcDep, _: Admin,
                       body: ConsolidationRequest | None = None) -> ConsolidationOut | JSONResponse:
    """Fewest active hosts with a migration cost: which workloads to move where, and why.

    Nothing moves unless `apply` is true; then the answer is 202 with a `consolidate` task (also
    in `Location`) that plans and runs the moves as live migrations, one by one; its result has
    the plan and `executed` / `failed`, the outcome of each move."""
    req = body or ConsolidationRequest()
    if req.apply:
        task = svc.batch.submit_consolidation(name, req.max_migrations, req.policy)
        return JSONResponse(jsonable_encoder(TaskOut.model_validate(task)), status_code=202,
                            headers={"Location": f"/v1/tasks/{task.id}"})
    plan = svc.batch.plan_consolidation(name, max_migrations=req.max_migrations, policy=req.policy)
    return ConsolidationOut.model_validate(plan)


@router.get("/{name}/allocation-policy", response_model=AllocationPolicyOut,
            responses=errors(401, 404, 422, 503))
def get_allocation_policy(name: NamePath, svc: SvcDep, _: Who) -> AllocationPolicyOut:
    return AllocationPolicyOut(pool=name, policy=svc.shares.get_allocation_policy(name))


@router.put("/{name}/allocation-policy", response_model=AllocationPolicyOut,
            responses=errors(401, 403, 404, 413, 422, 503))
def set_allocation_policy(name: NamePath, body: AllocationPolicyIn, svc: SvcDep,
                          _: Admin) -> AllocationPolicyOut:
    """What placement sets aside for a workload that declares reservation/limit/shares: min (its
    reservation), max (its limit, the default) or balanced (the reservation plus a share-proportional
    part of the headroom). Applies to workloads created from now on."""
    return AllocationPolicyOut(pool=name, policy=svc.shares.set_allocation_policy(name, body.policy))
