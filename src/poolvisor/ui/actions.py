"""The dashboard's forms: log in and out, create a workload, acknowledge an alert.

A created workload goes through the API's own route function (`create_workload`), so the body is
validated by the same pydantic schema and the use case, project scoping and placement are the ones
a POST /v1/workloads runs.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from poolvisor.api.auth import SvcDep
from poolvisor.api.errors import _readable, _validation_message
from poolvisor.api.ratelimit import limiter_of
from poolvisor.api.routes import workloads as workloads_api
from poolvisor.api.schemas import WorkloadCreate
from poolvisor.domain.errors import InvalidInputError, NoValidHostError, PoolvisorError
from poolvisor.services import Principal, Services
from poolvisor.ui import alerts
from poolvisor.ui.pages import workload_form_context
from poolvisor.ui.render import SECURITY_HEADERS, HtmlErrorRoute, page
from poolvisor.ui.session import (
    COOKIE,
    COOKIE_PATH,
    Form,
    LoginRequired,
    PostWho,
    WriteWho,
    check_origin,
    resolve,
    session_token,
)

router = APIRouter(prefix="/ui", route_class=HtmlErrorRoute, include_in_schema=False)
RESOURCE_FIELDS = ("vcpu", "memory_mib", "disk_gib", "net_mbps", "gpu")
MAX_ALERT_ID = 2**63 - 1


def _safe_next(target: str | None) -> str:
    """Only a path inside the dashboard: never an open redirect to another site."""
    if not target:
        return "/ui/pools"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui") or target.startswith("//"):
        return "/ui/pools"
    return target


# ---- session ----------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, svc: SvcDep,
               next: Annotated[str | None, Query(max_length=512)] = None) -> Response:
    try:
        resolve(svc, session_token(request))
    except LoginRequired:
        return page(request, "login.html", None, next=_safe_next(next), error=None)
    return RedirectResponse(_safe_next(next), status_code=303, headers=SECURITY_HEADERS)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, svc: SvcDep, fields: Form) -> Response:
    """Check the token as the API does; on success set it as the session cookie."""
    check_origin(request)
    token = fields.get("token", "").strip()
    target = _safe_next(fields.get("next"))
    try:
        resolve(svc, token)
    except LoginRequired as e:
        return page(request, "login.html", None, status=401, next=target, error=e.message)
    resp = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path=COOKIE_PATH,
                    secure=request.url.scheme == "https")
    return resp


@router.post("/logout", response_class=HTMLResponse)
def logout(_: PostWho) -> Response:
    resp = RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
    resp.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return resp


# ---- workloads --------------------------------------------------------------------------------
def workload_body(fields: dict[str, str]) -> WorkloadCreate:
    """The API's create body from the form: a flavor, or per-resource amounts (blank = none)."""
    body: dict[str, object] = {"name": fields.get("name", "").strip()}
    for key in ("project", "pool", "flavor"):
        v = fields.get(key, "").strip()
        if v:
            body[key] = v
    demand: dict[str, float] = {}
    for r in RESOURCE_FIELDS:
        v = fields.get(r, "").strip()
        if v:
            try:
                demand[r] = float(v)
            except ValueError:
                raise InvalidInputError(f"{r}: {v!r} is not a number") from None
    if demand:
        body["demand"] = demand
    try:
        return WorkloadCreate.model_validate(body)
    except ValidationError as e:
        errs = [_readable(dict(x)) for x in e.errors()]  # worded as the API words it (names: the rule)
        raise InvalidInputError(_validation_message(errs).removeprefix("request: ")
                                .replace("Value error, ", "")) from None


def _form_again(request: Request, svc: Services, who: Principal, fields: dict[str, str], message: str,
                status: int, explanation: object = None) -> HTMLResponse:
    rows = workloads_api.list_workloads(svc, who, None)
    return page(request, "workloads.html", who, status=status, nav="workloads", workloads=rows, project=None,
                form=fields, error=message, explanation=explanation, **workload_form_context(svc, who))


@router.post("/workloads", response_class=HTMLResponse)
def create_workload(request: Request, svc: SvcDep, who: WriteWho, fields: Form) -> Response:
    try:
        body = workload_body(fields)
        w = workloads_api.create_record(body, svc, who, limiter_of(request), dry_run=False, explain="summary")
    except NoValidHostError as e:  # show why no host fits, next to the form
        return _form_again(request, svc, who, fields, e.message, e.status_code, e.detail)
    except PoolvisorError as e:
        status = e.status_code if e.status_code < 500 else 503
        return _form_again(request, svc, who, fields, e.message, status)
    if isinstance(w, Response):  # the request waits in the queue (the form does not ask to today)
        return _form_again(request, svc, who, fields, "no host has room now: the workload waits in the "
                           "queue and appears in the list once placed", w.status_code)
    return RedirectResponse(f"/ui/workloads/{quote(w.project, safe='')}/{quote(w.name, safe='')}",
                            status_code=303, headers=SECURITY_HEADERS)


# ---- alerts -----------------------------------------------------------------------------------
@router.post("/alerts/{alert_id}/ack", response_class=HTMLResponse)
def ack_alert(alert_id: Annotated[int, Path(ge=1, le=MAX_ALERT_ID)], svc: SvcDep, who: WriteWho) -> Response:
    alerts.ack_alert(svc, who, alert_id)
    return RedirectResponse("/ui/events", status_code=303, headers=SECURITY_HEADERS)
