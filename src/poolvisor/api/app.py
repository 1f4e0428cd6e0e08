"""The FastAPI application factory: routes under /v1, error handlers, body limit, services on app.state."""

from __future__ import annotations

from fastapi import FastAPI

from poolvisor import __version__
from poolvisor.api.errors import install_error_handlers
from poolvisor.api.limits import DEFAULT_MAX_BODY, BodyLimitMiddleware
from poolvisor.api.routes import (
    events,
    flavors,
    hosts,
    networks,
    pools,
    projects,
    system,
    tokens,
    utilization,
    workloads,
)
from poolvisor.services import Services

DESCRIPTION = """Pool virtualization hosts and place workloads on them.

Authenticate with `Authorization: Bearer TOKEN` (`poolvisor serve` writes an admin token to
`~/.config/poolvisor/token`). Every error has the body `{"error": code, "message": str, "detail": ...}`.
"""


def create_app(services: Services, *, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """Build the app around an open Services instance (the caller owns and closes it)."""
    app = FastAPI(title="poolvisor", version=__version__, description=DESCRIPTION,
                  openapi_url="/openapi.json", redirect_slashes=False)
    app.state.services = services
    install_error_handlers(app)
    for module in (pools, hosts, flavors, projects, tokens, workloads, utilization, events, system, networks):
        app.include_router(module.router)
    app.add_middleware(BodyLimitMiddleware, max_body=max_body)
    return app
