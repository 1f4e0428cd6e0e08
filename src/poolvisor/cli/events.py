"""`poolvisor events`: the audit log, newest first (API client).

The table keeps time, kind and subject on one line each (they are what one scans and greps for)
and lets the message wrap; the project column appears only when some event's project is not
already part of its subject (workload/PROJECT/NAME, project/NAME). --json has every field.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt
from poolvisor.cli.render import emit_json, table

NOWRAP = ("time", "kind", "subject", "project")


def _project_hidden(e: dict[str, Any]) -> bool:
    """True when the event's subject does not already name its project."""
    project = e.get("project")
    return bool(project) and project not in str(e.get("subject", "")).split("/")[1:]


def event_rows(evs: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Columns and rows of the events table (time without the year: recent events, UTC)."""
    with_project = any(_project_hidden(e) for e in evs)
    columns = ("time", "kind", "subject", *(("project",) if with_project else ()), "message")
    rows = [(e["time"][5:19].replace("T", " "), e["kind"], e["subject"],
             *((e.get("project") or "–",) if with_project else ()), e["message"]) for e in evs]
    return columns, rows


def events(
    project: Annotated[str | None, typer.Option(
        "--project", "-p", help="Only this project's events (admins).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show recent events (placements, state changes, failures)."""
    with Api(url, token) as api:
        evs = api.get("/v1/events", project=project, limit=limit)
    if as_json:
        emit_json(evs)
        return
    columns, rows = event_rows(evs)
    table("Events (UTC)", columns, rows, nowrap=NOWRAP, compact=True)
