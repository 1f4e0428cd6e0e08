"""`poolvisor events`: the audit log, newest first (API client).

The table keeps time, kind and subject on one line each (they are what one scans and greps for)
and lets the message wrap; the project column appears only when some event's project is not
already part of its subject (workload/PROJECT/NAME, project/NAME). When long names leave the
message less than MIN_MESSAGE columns, each event is printed as a line of those fields with its
message below, indented, instead: names stay whole at any width. --json has every field.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.text import Text

from poolvisor.cli import render
from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.render import emit_json, printable, table
from poolvisor.domain.errors import PoolvisorError

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


RECONNECTS = 5  # --follow: attempts after a lost stream before giving up


def events(
    project: Annotated[str | None, typer.Option(
        "--project", "-p", help="Only this project's events (admins).")] = None,
    kind: Annotated[str | None, typer.Option(
        help="Only this kind or the kinds under it (e.g. workload, alert.raised).")] = None,
    subject: Annotated[str | None, typer.Option(
        "--object", help="Only this subject or those under it (e.g. host/h1, workload/demo).")] = None,
    severity: Annotated[str | None, typer.Option(
        help="At least this severity: info, warning or critical.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Only events at or after this ISO 8601 instant (e.g. 2026-12-03T00:00:00Z).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Then keep printing new events as they happen (Ctrl-C ends).")] = False,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show recent events (placements, state changes, failures, alerts); --follow streams new ones."""
    filters = {"project": project, "kind": kind, "object": subject, "severity": severity}
    with Api(url, token) as api:
        evs = api.get(api_path("events"), **filters, since=since, limit=limit)
        if follow:
            last = max((e["id"] for e in evs), default=None)
            for e in reversed(evs):
                print_event(e, as_json)
            for e in follow_events(api, filters, last):  # until Ctrl-C (exit 130, as every command)
                print_event(e, as_json)
            return
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


def print_event(e: dict[str, Any], as_json: bool) -> None:
    """One line per event (a follow's output is a log: greppable, never a table)."""
    if as_json:
        typer.echo(json.dumps(e, separators=(",", ":")))
        return
    when = str(e.get("time", ""))[5:19].replace("T", " ")
    sev = e.get("severity", "info")
    typer.echo(printable(f"{when}  {sev:<8}  {e['kind']}  {e['subject']}  {e['message']}"))


def follow_events(api: Api, filters: dict[str, Any], last: int | None) -> Iterator[dict[str, Any]]:
    """The event stream's events, reconnecting after `last` when the connection drops."""
    failures = 0
    while True:
        try:
            headers = {"Last-Event-ID": str(last)} if last is not None else None
            with api.stream(api_path("events", "stream"), headers=headers, **filters) as lines:
                for e in parse_sse(lines):
                    failures = 0
                    last = e["id"]
                    yield e
        except PoolvisorError as e:
            if getattr(e, "status_code", 500) < 500 or failures >= RECONNECTS:
                raise
            failures += 1
        time.sleep(min(2.0 * failures, 10.0))


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The `data:` JSON of each server-sent event (comments, `retry:` and other events skipped)."""
    data: list[str] = []
    name = "message"
    for line in lines:
        if not line:
            if data and name == "message":
                yield json.loads("\n".join(data))
            elif name == "error":
                raise PoolvisorError(f"the event stream ended: {' '.join(data)}")
            data, name = [], "message"
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
