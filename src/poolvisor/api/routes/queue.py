"""The pending-creation queue: list and cancel waiting requests; each pool's discipline (admins).

A request enters it from POST /v1/workloads with `wait: true` when nothing fits now (202)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from poolvisor.api.auth import Admin, SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import Name, NamePath
from poolvisor.api.queue_schemas import DisciplineIn, DisciplineOut, PendingOut

router = APIRouter(tags=["queue"])
ProjectQ = Annotated[Name | None, Query(description="project (admins; members always use their own)")]


@router.get("/v1/queue", response_model=list[PendingOut], responses=errors(401, 404, 422, 503))
def list_queue(svc: SvcDep, who: Who, project: ProjectQ = None) -> list[PendingOut]:
    """The waiting creation requests (a member's own project; admins: all, or ?project=)."""
    scoped = scope_project(who, project)
    return [PendingOut.model_validate(p) for p in svc.queue.list_pending(scoped)]


@router.delete("/v1/queue/{name}", status_code=204, responses=errors(401, 404, 422, 503))
def cancel_queued(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    """Withdraw a waiting request (nothing was allocated for it)."""
    scoped = scope_project(who, project, default="default")
    assert scoped is not None
    svc.queue.cancel(scoped, name)


@router.put("/v1/pools/{name}/queue-discipline", response_model=DisciplineOut,
            responses=errors(401, 403, 404, 413, 422, 503))
def set_queue_discipline(name: NamePath, body: DisciplineIn, svc: SvcDep, _: Admin) -> DisciplineOut:
    """The order the pool's waiting requests are served in: fifo, priority (strict, the default),
    sjf (declared duration), round-robin (between projects), drf (weighted dominant-resource fair
    share between projects within a class) or ps-n (the seed's P = S/N)."""
    return DisciplineOut(pool=name, discipline=svc.queue.set_discipline(name, body.discipline))
