"""Workloads: create (placement → driver, or a dry run that only explains), list, act, migrate, delete.

Members act inside their own project; another project's workloads do not exist for them (404).
Admins see every project; without `?project=` they address a workload by its name alone when that
name is unique across projects, and create into the project 'default' (created on first use, by
the transaction that creates the workload: a dry run or a failed request leaves no project behind).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from poolvisor.api.auth import SvcDep, Who, scope_project
from poolvisor.api.awaiting import run_flow
from poolvisor.api.errors import ForbiddenError, errors
from poolvisor.api.fields import Name, NamePath, QueryBool
from poolvisor.api.queue_schemas import PendingOut
from poolvisor.api.ratelimit import Limiter
from poolvisor.api.schemas import (
    Action,
    MigrateRequest,
    TaskOut,
    WorkloadBatchCreate,
    WorkloadBatchOut,
    WorkloadCreate,
    WorkloadOut,
)
from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.services import Principal, Services
from poolvisor.services.records import WorkloadRecord

router = APIRouter(prefix="/v1/workloads", tags=["workloads"])
DEFAULT_PROJECT = "default"
ProjectQ = Annotated[Name | None, Query(description="project (admins; members always use their own)")]
ACTIONS: tuple[Action, ...] = ("start", "stop", "suspend", "resume")


def locate_workload(svc: Services, who: Principal, name: str, project: str | None) -> str:
    """The project holding workload `name` as this caller may see it."""
    scoped = scope_project(who, project)
    if scoped is not None:
        return scoped
    owners = sorted({w.project for w in svc.workloads.list_workloads() if w.name == name})
    if not owners:
        raise NotFoundError(f"workload {name!r} not found")
    if len(owners) > 1:
        raise ConflictError(f"workload {name!r} exists in projects {', '.join(owners)}; pass ?project=")
    return owners[0]


@router.get("", response_model=list[WorkloadOut], responses=errors(401, 404, 422, 503))
def list_workloads(svc: SvcDep, who: Who, project: ProjectQ = None) -> list[WorkloadOut]:
    scoped = scope_project(who, project)
    if scoped is not None:
        svc.catalog.get_project(scoped)  # 404 for an unknown project rather than an empty list
    return [WorkloadOut.model_validate(w) for w in svc.workloads.list_workloads(scoped)]


@router.post(
    "", status_code=201, response_model=WorkloadOut,
    responses={200: {"model": WorkloadOut, "description": "dry run: the decision and explanation, nothing "
                     "allocated"},
               202: {"model": PendingOut, "description": "`wait: true` and nothing fits now: queued"},
               **errors(401, 404, 409, 413, 422, 503)},
)
async def create_workload(
    body: WorkloadCreate, response: Response, svc: SvcDep, who: Who, limiter: Limiter,
    dry_run: Annotated[QueryBool, Query(description="only place and explain; allocate nothing")] = False,
    explain: Annotated[Literal["summary", "full"], Query(
        description="summary: the chosen host, top candidates with per-scorer scores, the rule and "
                    "candidate counts (the fast path); full: also every filter's rejection counts "
                    "and reasons (one pass over all hosts)")] = "summary",
) -> WorkloadOut:
    """Place the workload (filters, then scorers) and create it on the chosen host's driver.

    A 409 `no_valid_host` error carries the full explanation in `detail`: which filters
    eliminated how many hosts, and why."""
    flows = svc.workloads.flows
    if flows is None or dry_run or body.wait or body.networks:  # reads or waits of their own: a thread
        got = await run_in_threadpool(create_record, body, svc, who, limiter, dry_run=dry_run,
                                      explain=explain)
    else:  # the server's writer runs it (services/flow.py): no thread waits for the claim or the commit
        project, placement, create_project = _create_request(body, who, limiter)
        got = await run_flow(flows, svc.workloads.create_flow(
            project, body.name, explain=explain == "full", create_project=create_project, **placement))
    if isinstance(got, Response):
        return got  # type: ignore[return-value]
    # validated once, into the declared model, and serialized as FastAPI would (by alias): a
    # Response passes through as is, where a model would be validated and dumped a second time
    return Response(WorkloadOut.model_validate(got).model_dump_json(by_alias=True),  # type: ignore[return-value]
                    status_code=200 if dry_run else 201, media_type="application/json")


def _create_request(body: WorkloadCreate, who: Principal, limiter: Any) -> tuple[str, dict[str, Any], bool]:
    """(project, placement arguments, create the project) of a create request, once its caller
    may make it and its project's rate limit allows (429)."""
    project = scope_project(who, body.project, default=DEFAULT_PROJECT)
    assert project is not None
    if body.priority_class == "system" and who.role != "admin":  # it may preempt every other class
        raise ForbiddenError("priority class system needs an admin token")
    limiter.check(project)
    placement: dict[str, Any] = {
        "flavor": body.flavor, "demand": body.demand, "kind": body.kind, "priority": body.priority,
        "group": body.group, "group_policy": body.group_policy, "required_labels": body.required_labels,
        "forbidden_labels": body.forbidden_labels, "pool": body.pool, "networks": body.networks,
        "priority_class": body.priority_class}
    for k in ("reservation", "limit", "shares"):  # only when declared (services/shares.py)
        if getattr(body, k) is not None:
            placement[k] = getattr(body, k)
    return project, placement, who.role == "admin" and body.project is None


def create_record(body: WorkloadCreate, svc: Services, who: Principal, limiter: Any, *, dry_run: bool,
                  explain: str) -> WorkloadRecord | Response:
    """The create use case behind the route (also the dashboard's form): the workload's record,
    or the 202 response of a request that waits in the queue."""
    project, placement, create_project = _create_request(body, who, limiter)
    if body.wait and not dry_run:  # nothing fits now: 202 and the queue entry (services/queue.py)
        rec, pending = svc.queue.create_or_wait(project, body.name, duration_s=body.duration_s,
                                                create_project=create_project,
                                                explain=explain == "full", **placement)
        if pending is not None:
            return JSONResponse(jsonable_encoder(PendingOut.model_validate(pending)), status_code=202)
        return rec
    return svc.workloads.create_workload(project, body.name, dry_run=dry_run, explain=explain == "full",
                                         create_project=create_project, **placement)


@router.post(
    "/batch", status_code=201, response_model=WorkloadBatchOut,
    responses={200: {"model": WorkloadBatchOut, "description": "dry run: the plan, nothing allocated"},
               **errors(401, 404, 409, 413, 422, 503)},
)
def create_workloads_batch(
    body: WorkloadBatchCreate, response: Response, svc: SvcDep, who: Who, limiter: Limiter,
    dry_run: Annotated[QueryBool, Query(description="only plan and explain; allocate nothing")] = False,
) -> WorkloadBatchOut:
    """Place many workloads at once with the packing engine (fewest hosts), in one transaction.

    All-or-nothing by default: a 409 `no_valid_host` error carries the plan in `detail`. The body
    is limited to 4 MiB (413 above it): a batch whose items carry large label maps is sent in parts."""
    project = scope_project(who, body.project, default=DEFAULT_PROJECT)
    assert project is not None
    limiter.check(project)
    res = svc.batch.create_workloads_batch(
        project, [w.model_dump(exclude_none=True) for w in body.workloads],
        all_or_nothing=body.all_or_nothing, pool=body.pool, dry_run=dry_run,
        create_project=who.role == "admin" and body.project is None)
    if dry_run:
        response.status_code = 200
    return WorkloadBatchOut.model_validate(res)


@router.get("/{name}", response_model=WorkloadOut, responses=errors(401, 404, 409, 422, 503))
def get_workload(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> WorkloadOut:
    """One workload; `granted`: what its host gives it now (a host whose driver shares contention)."""
    rec = svc.workloads.get_workload(locate_workload(svc, who, name, project), name)
    return WorkloadOut.model_validate(svc.shares.granted(rec))


@router.delete("/{name}", status_code=204, responses=errors(401, 404, 409, 422, 503))
async def delete_workload(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    flows = svc.workloads.flows
    where = scope_project(who, project)
    if flows is None or where is None:  # (an admin naming no project: a read to find it, in a thread)
        await run_in_threadpool(_delete, svc, who, name, project)
        return
    await run_flow(flows, svc.workloads.lifecycle.delete_flow(where, name))  # by the writer (flow.py)


def _delete(svc: Services, who: Principal, name: str, project: str | None) -> None:
    svc.workloads.delete_workload(locate_workload(svc, who, name, project), name)


def _action_route(action: Action) -> None:
    def act(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> WorkloadOut:
        where = locate_workload(svc, who, name, project)
        return WorkloadOut.model_validate(svc.workloads.workload_action(where, name, action))

    act.__name__ = f"{action}_workload"
    act.__doc__ = f"{action.capitalize()} the workload (409 when its state does not allow it)."
    router.post(f"/{{name}}/{action}", response_model=WorkloadOut,
                responses=errors(401, 404, 409, 413, 422, 503))(act)


for _action in ACTIONS:
    _action_route(_action)


@router.post("/{name}/migrate", status_code=202, response_model=TaskOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def migrate_workload(name: NamePath, response: Response, svc: SvcDep, who: Who, project: ProjectQ = None,
                     body: MigrateRequest | None = None) -> TaskOut:
    """Move the workload to `host`, or to the host placement chooses when none is given.

    Answers 202 with the queued `migrate` task (also in `Location`); poll `GET /v1/tasks/{id}`.
    An unknown host, a workload that cannot move now or one already on `host` is refused at once,
    as is one its host's driver will not move as it is (409 `refused_by_driver`: a libvirt guest
    with snapshots);
    placement (409 no_valid_host) and the driver's failures end the task `failed`/`rolled_back`."""
    target = body.host if body is not None else None
    where = locate_workload(svc, who, name, project)
    task = svc.workloads.submit_migrate(where, name, target)
    response.headers["Location"] = f"/v1/tasks/{task.id}"
    return TaskOut.model_validate(task)
