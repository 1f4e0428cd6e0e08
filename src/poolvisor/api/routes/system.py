"""Endpoints for probes and scrapers: /healthz (no token) and /metrics (token optional).

/metrics without a token shows fleet totals only; a token widens it to what that token may read
(see api/metrics.py). A token that is sent must be valid: a bad one is a 401, never a silent
anonymous scrape.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials

from poolvisor import __version__
from poolvisor.api import metrics
from poolvisor.api.auth import MAX_TOKEN_LEN, SvcDep, bearer
from poolvisor.api.errors import UnauthorizedError, errors
from poolvisor.api.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers (no database round trip, no token)."""
    # async: no I/O, so no thread-pool hops (a sync route costs two: the handler, then the
    # response model's validation), about two thirds of the request's server CPU
    return Health(status="ok", version=__version__)


def metrics_view(
    request: Request, svc: SvcDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> metrics.MetricsView:
    """What this scrape may show: nothing named without a token; with one, what it may read."""
    if creds is None or not creds.credentials:
        if "authorization" in request.headers:
            raise UnauthorizedError("malformed Authorization header (expected: Bearer TOKEN)")
        return metrics.ANONYMOUS
    token = creds.credentials
    scrape: str | None = getattr(request.app.state, "metrics_token", None)
    if scrape and hmac.compare_digest(token.encode(), scrape.encode()):
        return metrics.EVERYTHING
    who = svc.auth.authenticate(token) if len(token) <= MAX_TOKEN_LEN else None
    if who is None:
        raise UnauthorizedError("invalid bearer token")
    if who.project is None:  # an admin or a global viewer
        return metrics.EVERYTHING
    return metrics.member_view(who.project) if who.project is not None else metrics.ANONYMOUS


@router.get("/metrics", response_class=PlainTextResponse, responses={
    200: {"content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
          "description": "Prometheus text format"},
    **errors(401, 503)},
    openapi_extra={"security": [{}]})  # with the bearer scheme FastAPI adds: the token is optional
def get_metrics(request: Request, svc: SvcDep,
                view: Annotated[metrics.MetricsView, Depends(metrics_view)]) -> PlainTextResponse:
    """Without a token: fleet totals only (no pool, project or host names). A member token adds
    the per-pool series and its own project's workloads; an admin token or the scrape token
    (`poolvisor serve --metrics-token-file`) shows every pool and project."""
    app_metrics: metrics.AppMetrics | None = getattr(request.app.state, "metrics", None)
    body = metrics.render(svc.catalog.list_pools(), svc.hosts.list_hosts(), svc.workloads.list_workloads(),
                          view, app_metrics, svc.alerts.active_counts() if view.pools else ())
    return PlainTextResponse(body, media_type=metrics.CONTENT_TYPE)
