"""Hosts: capacity, overcommit, labels, failure domain and state (reads: any token; writes: admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.fields import Name, NamePath
from poolvisor.api.schemas import HostCreate, HostOut, HostStateChange, TaskOut

router = APIRouter(prefix="/v1/hosts", tags=["hosts"])


@router.get("", response_model=list[HostOut], responses=errors(401, 404, 422, 503))
def list_hosts(
    svc: SvcDep, _: Who, pool: Annotated[Name | None, Query(description="only this pool's hosts")] = None,
) -> list[HostOut]:
    return [HostOut.model_validate(h) for h in svc.hosts.list_hosts(pool)]


@router.post("", status_code=201, response_model=HostOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def create_host(body: HostCreate, svc: SvcDep, _: Admin) -> HostOut:
    """Declare a host run by `driver` at `uri` (sim by default); without `capacity`, the node's own."""
    rec = svc.hosts.create_host(body.name, dict(body.capacity) if body.capacity is not None else None,
                                pool=body.pool, overcommit=body.overcommit, labels=body.labels,
                                domain=body.domain, max_workloads=body.max_workloads, driver=body.driver,
                                uri=body.uri, fence=body.fence,
                                gpus=[g.model_dump() for g in body.gpus] if body.gpus is not None else None)
    return HostOut.model_validate(rec)


@router.get("/{name}", response_model=HostOut, responses=errors(401, 404, 422, 503))
def get_host(name: NamePath, svc: SvcDep, _: Who) -> HostOut:
    return HostOut.model_validate(svc.hosts.get_host(name))


@router.put("/{name}/state", response_model=HostOut, responses=errors(401, 403, 404, 409, 413, 422, 503))
def set_host_state(name: NamePath, body: HostStateChange, svc: SvcDep, _: Admin) -> HostOut:
    """up, maintenance (no new workloads), fenced (through the host's fence agent; 503 when it
    fails, 409 for fence method 'none') or down (their workloads must move)."""
    return HostOut.model_validate(svc.hosts.set_host_state(name, body.state))


@router.post("/{name}/drain", status_code=202, response_model=TaskOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def drain_host(name: NamePath, response: Response, svc: SvcDep, _: Admin) -> TaskOut:
    """Live-migrate every workload off the host, then put it in maintenance (no new placements).

    The host is `draining` from this answer on; 202 with the queued `drain` task (also in
    `Location`). Workloads that cannot move end the task `failed` with each one's reason (result
    `stuck`, with the placement explanation) and the host stays draining; a cancel
    (`POST /v1/tasks/{id}/cancel`) stops it and returns the host to its previous state."""
    task = svc.maintenance.submit_drain(name)
    response.headers["Location"] = f"/v1/tasks/{task.id}"
    return TaskOut.model_validate(task)


@router.post("/{name}/undrain", response_model=HostOut, responses=errors(401, 403, 404, 409, 413, 422, 503))
def undrain_host(name: NamePath, svc: SvcDep, _: Admin) -> HostOut:
    """Return a draining or maintenance host to `up` (409 while a drain task runs on it)."""
    return HostOut.model_validate(svc.maintenance.undrain(name))


@router.delete("/{name}", status_code=204, responses=errors(401, 403, 404, 409, 422, 503))
def delete_host(name: NamePath, svc: SvcDep, _: Admin) -> None:
    svc.hosts.delete_host(name)
