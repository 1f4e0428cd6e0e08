"""The web dashboard at /ui: server-rendered pages (Jinja2) over the API's route functions.

Small vendored scripts only (static/vendor: htmx for polling and partial updates, uPlot for the
charts; no build step, nothing loaded from another site); see docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount_ui(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to `app` (left out of the OpenAPI document), and
    let the app's task executor run the what-if tasks its what-if page submits."""
    from poolvisor.sim.whatif_task import register
    from poolvisor.ui import actions, pages, whatif

    for module in (pages, actions, whatif):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    if app.state.services is not None:  # (an app built only for its OpenAPI document has none)
        register(app.state.services)
