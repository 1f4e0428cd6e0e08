"""`poolvisor events`: the audit log, newest first (API client)."""

from __future__ import annotations

from typing import Annotated

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.render import emit_json, table


def events(
    project: Annotated[str | None, typer.Option(
        "--project", "-p", help="Only this project's events (admins).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show recent events (placements, state changes, failures)."""
    with Api(url, token) as api:
        evs = api.get(api_path("events"), project=project, limit=limit)
    if as_json:
        emit_json(evs)
        return
    table("Events", ("time", "kind", "subject", "project", "message"),
          [(e["time"][:19].replace("T", " "), e["kind"], e["subject"], e.get("project") or "–", e["message"])
           for e in evs])
