"""Unauthenticated endpoints for probes and scrapers: /healthz and /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from poolvisor import __version__
from poolvisor.api import metrics
from poolvisor.api.auth import SvcDep
from poolvisor.api.errors import errors
from poolvisor.api.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers (no database round trip, no token)."""
    return Health(status="ok", version=__version__)


@router.get("/metrics", response_class=PlainTextResponse, responses={
    200: {"content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
          "description": "Prometheus text format"},
    **errors(503)})
def get_metrics(svc: SvcDep) -> PlainTextResponse:
    """Aggregates only (counts and per-pool amounts), no workload names: safe without a token."""
    body = metrics.render(svc.list_pools(), svc.list_hosts(), svc.list_workloads())
    return PlainTextResponse(body, media_type=metrics.CONTENT_TYPE)
