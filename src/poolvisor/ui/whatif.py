"""The what-if pages: submit a run of a pool's recorded utilization under consolidation policies, follow
it, and chart stored runs.

A run is a `whatif` task (sim/whatif_task.py, the computation of `poolvisor whatif`): the form
queues it, its page follows its progress with htmx and charts its result once it succeeded; every
earlier run stays listed (tasks are kept in the store). It reads every project's workloads, so the
pages are for admins (the API's `admin` check), and a task is read through the API's `get_task`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from poolvisor.api.auth import SvcDep, require_admin
from poolvisor.api.routes import pools as pools_api
from poolvisor.api.routes import tasks as tasks_api
from poolvisor.api.routes.tasks import TaskId
from poolvisor.api.schemas import TaskOut
from poolvisor.domain.errors import InvalidInputError, NotFoundError, PoolvisorError
from poolvisor.services import Principal, Services
from poolvisor.sim.whatif_task import MAX_STEPS, WHATIF, WhatifRuns
from poolvisor.ui.history import chart
from poolvisor.ui.render import SECURITY_HEADERS, HtmlErrorRoute, page
from poolvisor.ui.session import Form, UiWho, WriteWho

router = APIRouter(prefix="/ui", route_class=HtmlErrorRoute, include_in_schema=False)
# a field left blank takes its default
DEFAULTS = {"pool": "", "policies": "lr-mmt,thr-mmt", "steps": "288", "interval": "300", "fresh": ""}
SHOWN = ("energy_kwh", "migrations", "slatah", "pdm", "slav", "host_shutdowns")
STORED_SHOWN = 20


def _int(fields: dict[str, str], key: str, lo: int, hi: int) -> int:
    try:
        v = int(fields.get(key, "").strip() or DEFAULTS[key])
    except ValueError:
        raise InvalidInputError(f"{key}: give a whole number in {lo}..{hi}") from None
    if not lo <= v <= hi:
        raise InvalidInputError(f"{key}: give a whole number in {lo}..{hi}")
    return v


def submit_from_form(svc: Services, fields: dict[str, str]) -> int:
    """Queue the form's run; its task id."""
    policies = [p.strip() for p in (fields.get("policies", "").strip() or DEFAULTS["policies"]).split(",")]
    if any(not p for p in policies):
        raise InvalidInputError("policies: a comma-separated list, e.g. lr-mmt,thr-mmt-0.8")
    t = WhatifRuns(svc).submit(fields.get("pool", "").strip() or None, policies,
                          steps=_int(fields, "steps", 2, MAX_STEPS),
                          interval_s=_int(fields, "interval", 1, 86400), fresh=bool(fields.get("fresh")))
    return t.id


def result_charts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Active hosts, power and migrations over time, one series per run (x: the history's instants)."""
    runs = result["runs"]
    x = runs[0]["series"]["time_s"]
    return [
        chart("active hosts", x, {r["label"]: r["series"]["active_hosts"] for r in runs}),
        chart("power (W)", x, {r["label"]: r["series"]["power_w"] for r in runs}, unit="W"),
        chart("migrations started", x, {r["label"]: r["series"]["migrations"] for r in runs[1:]}),
    ]


def _stored(svc: Services, who: Principal) -> list[TaskOut]:
    return [t for t in tasks_api.list_tasks(svc, who, None, None, 200) if t.kind == WHATIF][:STORED_SHOWN]


def _form(request: Request, svc: Services, who: Principal, form: dict[str, str], error: str | None,
          status: int = 200) -> HTMLResponse:
    return page(request, "whatif.html", who, status=status, nav="whatif", form=form, error=error,
                pool_names=[p.name for p in pools_api.list_pools(svc, who)], stored=_stored(svc, who))


@router.get("/whatif", response_class=HTMLResponse)
def whatif_form(request: Request, svc: SvcDep, who: UiWho) -> HTMLResponse:
    require_admin(request, who)
    return _form(request, svc, who, DEFAULTS, None)


@router.post("/whatif", response_class=HTMLResponse)
def whatif_submit(request: Request, svc: SvcDep, who: WriteWho, fields: Form) -> Response:
    require_admin(request, who)
    form = {k: fields.get(k, "") for k in DEFAULTS}
    try:
        task_id = submit_from_form(svc, fields)
    except PoolvisorError as e:
        return _form(request, svc, who, form, e.message, e.status_code if e.status_code < 500 else 503)
    return RedirectResponse(f"/ui/whatif/{task_id}", status_code=303, headers=SECURITY_HEADERS)


def _run(request: Request, svc: Services, who: Principal, task_id: int) -> TaskOut:
    require_admin(request, who)
    t = tasks_api.get_task(task_id, svc, who)
    if t.kind != WHATIF:
        raise NotFoundError(f"what-if run {task_id} not found")
    return t


@router.get("/whatif/{task_id}", response_class=HTMLResponse)
def whatif_run(request: Request, task_id: TaskId, svc: SvcDep, who: UiWho) -> HTMLResponse:
    t = _run(request, svc, who, task_id)
    charts = result_charts(t.result) if t.state == "succeeded" and t.result else []
    return page(request, "whatif_run.html", who, nav="whatif", t=t, r=t.result, charts=charts, shown=SHOWN)


@router.get("/whatif/{task_id}/status", response_class=HTMLResponse)
def whatif_status(request: Request, task_id: TaskId, svc: SvcDep, who: UiWho) -> HTMLResponse:
    """The progress box alone (htmx polls it); once the run has ended, the page reloads itself."""
    t = _run(request, svc, who, task_id)
    resp = page(request, "_whatif_progress.html", who, t=t)
    if t.state not in ("queued", "running"):
        resp.headers["HX-Refresh"] = "true"
    return resp
