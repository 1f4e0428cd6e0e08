"""The dashboard's read pages: pools (charts), hosts (heat map), workloads, tasks, events and alerts.

Each page gets its data from the API's route functions called with the session's principal, so
what a page shows is exactly what the same token gets from /v1 (members: their project; another
project's objects are 404), with no authorization rule of its own.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BeforeValidator

from poolvisor.api.auth import SvcDep, scope_project
from poolvisor.api.fields import Name, NamePath
from poolvisor.api.routes import events as events_api
from poolvisor.api.routes import flavors as flavors_api
from poolvisor.api.routes import hosts as hosts_api
from poolvisor.api.routes import pools as pools_api
from poolvisor.api.routes import projects as projects_api
from poolvisor.api.routes import tasks as tasks_api
from poolvisor.api.routes import workloads as workloads_api
from poolvisor.api.routes.tasks import TaskId
from poolvisor.api.schemas import HostOut, WorkloadOut
from poolvisor.domain.errors import InvalidInputError
from poolvisor.services import Principal, Services
from poolvisor.sim.whatif_task import WHATIF
from poolvisor.ui import alerts
from poolvisor.ui.history import chart, pool_allocation, pool_measured
from poolvisor.ui.render import HtmlErrorRoute, page
from poolvisor.ui.session import UiWho

router = APIRouter(prefix="/ui", route_class=HtmlErrorRoute, include_in_schema=False)
# a filter form's blank field ("all projects") arrives as `project=`: that is no filter
ProjectQ = Annotated[Name | None, BeforeValidator(lambda v: v or None), Query()]
HEAT_RESOURCES = ("vcpu", "memory_mib", "disk_gib", "net_mbps", "gpu")
TASK_ROWS = 50
EVENT_ROWS = 200


@router.get("", response_class=HTMLResponse)
def home(_: UiWho) -> RedirectResponse:
    return RedirectResponse("/ui/pools", status_code=303)


# ---- pools ------------------------------------------------------------------------------------
@router.get("/pools", response_class=HTMLResponse)
def pools_page(request: Request, svc: SvcDep, who: UiWho) -> HTMLResponse:
    pools = pools_api.list_pools(svc, who)
    return page(request, "pools.html", who, nav="pools", pools=pools)


@router.get("/pools/{name}", response_class=HTMLResponse)
def pool_page(request: Request, name: NamePath, svc: SvcDep, who: UiWho) -> HTMLResponse:
    pool = pools_api.get_pool(name, svc, who)
    hosts = hosts_api.list_hosts(svc, who, name)
    names = {h.name for h in hosts}
    alloc = pool_allocation(svc, dict(pool.allocated), names, time.time())
    fractions = {r: [v / pool.allocatable[r] for v in vals]
                 for r, vals in alloc.allocated.items() if pool.allocatable.get(r, 0) > 0}
    charts = [chart(f"pool {name}: allocated / allocatable", alloc.times, fractions, unit="%", stepped=True,
                    ymax=1.0)]
    # measured use of the workloads running here (aggregate over projects, like the pool's `used`)
    measured = pool_measured(svc, names, svc.workloads.list_workloads())
    if measured.times and pool.allocatable.get("vcpu", 0) > 0:
        cap = pool.allocatable["vcpu"]
        charts.append(chart(f"pool {name}: measured vCPU use / allocatable", measured.times,
                            {"vcpu used": [v / cap for v in measured.vcpu]}, unit="%", ymax=1.0))
    return page(request, "pool.html", who, nav="pools", pool=pool, hosts=hosts, alloc=alloc,
                measured=measured, charts=charts, resources=_resources(hosts), heat="vcpu")


# ---- hosts ------------------------------------------------------------------------------------
def _resources(hosts: list[HostOut]) -> list[str]:
    have = {r for h in hosts for r, v in h.allocatable.items() if v > 0}
    return [r for r in HEAT_RESOURCES if r in have] + sorted(have - set(HEAT_RESOURCES))


@router.get("/hosts", response_class=HTMLResponse)
def hosts_page(request: Request, svc: SvcDep, who: UiWho,
               resource: Annotated[Name, Query()] = "vcpu") -> HTMLResponse:
    hosts = hosts_api.list_hosts(svc, who)
    resources = _resources(hosts)
    if resources and resource not in resources:
        raise InvalidInputError(f"unknown resource {resource!r}; hosts have {', '.join(resources)}")
    by_pool: dict[str, list[HostOut]] = {}
    for h in hosts:
        by_pool.setdefault(h.pool or "(no pool)", []).append(h)
    return page(request, "hosts.html", who, nav="hosts", by_pool=by_pool, resources=resources,
                heat=resource, count=len(hosts))


# ---- workloads --------------------------------------------------------------------------------
def workload_form_context(svc: Services, who: Principal) -> dict[str, Any]:
    """What the create form offers: flavors and pools (readable by every token), and the projects
    the caller may create into (a member: its own)."""
    projects = [p.name for p in projects_api.list_projects(svc, who)]
    return {"flavors": flavors_api.list_flavors(svc, who),
            "pool_names": [p.name for p in pools_api.list_pools(svc, who)], "projects": projects}


@router.get("/workloads", response_class=HTMLResponse)
def workloads_page(request: Request, svc: SvcDep, who: UiWho, project: ProjectQ = None) -> HTMLResponse:
    rows = workloads_api.list_workloads(svc, who, project)
    return page(request, "workloads.html", who, nav="workloads", workloads=rows, project=project,
                form={}, error=None, **workload_form_context(svc, who))


@router.get("/workloads/{project}/{name}", response_class=HTMLResponse)
def workload_page(request: Request, project: NamePath, name: NamePath, svc: SvcDep,
                  who: UiWho) -> HTMLResponse:
    w: WorkloadOut = workloads_api.get_workload(name, svc, who, project)
    charts = []
    if svc.utilization.recorded([(w.project, w.name)])[0]:
        h = svc.utilization.utilization_history([(w.project, w.name)], 300.0, steps=288)
        start = float(h.start_s or 0.0)
        charts.append(chart(f"{w.name}: CPU use / vCPU allocation",
                            [start + k * h.interval_s for k in range(h.util.shape[1])],
                            {"cpu": h.util[0].tolist()}, unit="%", ymax=1.0))
    evs = [e for e in events_api.list_events(svc, who, scope_project(who, w.project), limit=200)
           if e.subject == f"workload/{w.project}/{w.name}"]
    return page(request, "workload.html", who, nav="workloads", w=w, charts=charts, events=evs)


# ---- tasks ------------------------------------------------------------------------------------
@router.get("/tasks", response_class=HTMLResponse)
def tasks_page(request: Request, svc: SvcDep, who: UiWho) -> HTMLResponse:
    rows = tasks_api.list_tasks(svc, who, None, None, TASK_ROWS)
    return page(request, "tasks.html", who, nav="tasks", tasks=rows)


@router.get("/tasks/rows", response_class=HTMLResponse)
def task_rows(request: Request, svc: SvcDep, who: UiWho) -> HTMLResponse:
    """The task table alone: htmx polls it while a task is active."""
    rows = tasks_api.list_tasks(svc, who, None, None, TASK_ROWS)
    return page(request, "_task_rows.html", who, tasks=rows)


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task_page(request: Request, task_id: TaskId, svc: SvcDep, who: UiWho) -> Response:
    """One task: state, progress, its log, the result or error; follows it while it is active."""
    t = tasks_api.get_task(task_id, svc, who)
    if t.kind == WHATIF:  # a what-if run has its own page, with its charts
        return RedirectResponse(f"/ui/whatif/{t.id}", status_code=303)
    return page(request, "task.html", who, nav="tasks", t=t,
                result=json.dumps(t.result, indent=1, sort_keys=True) if t.result is not None else None)


@router.get("/tasks/{task_id}/status", response_class=HTMLResponse)
def task_status(request: Request, task_id: TaskId, svc: SvcDep, who: UiWho) -> HTMLResponse:
    """The progress box alone (htmx polls it); once the task has ended, the page reloads itself."""
    t = tasks_api.get_task(task_id, svc, who)
    resp = page(request, "_task_progress.html", who, t=t)
    if t.state not in ("queued", "running"):
        resp.headers["HX-Refresh"] = "true"
    return resp


# ---- events and alerts ------------------------------------------------------------------------
@router.get("/events", response_class=HTMLResponse)
def events_page(request: Request, svc: SvcDep, who: UiWho, project: ProjectQ = None) -> HTMLResponse:
    rows = events_api.list_events(svc, who, project, limit=EVENT_ROWS)
    return page(request, "events.html", who, nav="events", events=rows, project=project,
                alerts=alerts.list_alerts(svc, who))
