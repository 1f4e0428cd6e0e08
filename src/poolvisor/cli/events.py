"""`poolvisor events`: the audit log, newest first (API client).

The table keeps time, kind and subject on one line each (they are what one scans and greps for)
and lets the message wrap; the project column appears only when some event's project is not
already part of its subject (workload/PROJECT/NAME, project/NAME). When long names leave the
message less than MIN_MESSAGE columns, each event is printed as a line of those fields with its
message below, indented, instead: names stay whole at any width. --json has every field.
"""

from __future__ import annotations

import textwrap
from typing import Annotated, Any

import typer
from rich.text import Text

from poolvisor.cli import render
from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.render import emit_json, table

NOWRAP = ("time", "kind", "subject", "project")
MIN_MESSAGE = 24
INDENT = "    "


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
        evs = api.get(api_path("events"), project=project, limit=limit)
    if as_json:
        emit_json(evs)
        return
    columns, rows = event_rows(evs)
    fixed = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns[:-1])] if rows else []
    if rows and sum(fixed) + 2 * len(fixed) + MIN_MESSAGE > render.console.width:
        stacked(columns, rows)
    else:
        table("Events (UTC)", columns, rows, nowrap=NOWRAP, compact=True)


def stacked(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Narrow terminals: the fields on a line (wrapped between fields, never inside one), then the
    message wrapped and indented below."""
    console = render.console
    width = max(20, console.width - len(INDENT))
    console.print(f"Events (UTC): {', '.join(columns[:-1])}; the message below")
    for r in rows:
        fields = "  ".join(f.replace(" ", "\u00a0") for f in r[:-1])  # a time stays one piece
        head = textwrap.wrap(fields, console.width, subsequent_indent="  ", break_long_words=False,
                             break_on_hyphens=False)
        message = textwrap.wrap(r[-1], width) or [""]
        lines = [x.replace("\u00a0", " ") for x in head] + [INDENT + x for x in message]
        console.print(Text("\n".join(lines)), crop=False, overflow="ignore")
