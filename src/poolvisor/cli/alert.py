"""`poolvisor alert list|ack`: the alerts the server's rules raised (client of the REST API)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.errors import fail
from poolvisor.cli.render import emit_json, say, table

app = typer.Typer(help="Alerts (pool nearly full, host down, quota nearly exhausted, SLA violation, stuck "
                  "task): list and acknowledge (client of the REST API).", no_args_is_help=True)
STATES = ("active", "resolved", "all")
SEVERITIES = ("info", "warning", "critical")
AlertIdArg = Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="Alert id.")]


def _when(t: str | None) -> str:
    return (t or "")[5:19].replace("T", " ") or "–"


@app.command("list")
def list_(
    state: Annotated[str, typer.Option(help="active, resolved or all.")] = "active",
    severity: Annotated[str | None, typer.Option(help="At least this severity: info, warning, critical.")]
    = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project's (admins).")]
    = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List alerts, newest first."""
    if state not in STATES:
        raise fail(f"--state must be one of {', '.join(STATES)}; got {state!r}", 2)
    if severity is not None and severity not in SEVERITIES:
        raise fail(f"--severity must be one of {', '.join(SEVERITIES)}; got {severity!r}", 2)
    with Api(url, token) as api:
        alerts: list[dict[str, Any]] = api.get(api_path("alerts"), state=state, severity=severity,
                                               project=project, limit=limit)
    if as_json:
        emit_json(alerts)
        return
    rows = [(str(a["id"]), a["severity"], a["state"] + (" (acked)" if a["acked_at"] else ""), a["rule"],
             a["subject"], _when(a["raised_at"]), a["message"]) for a in alerts]
    table("Alerts (UTC)", ("id", "severity", "state", "rule", "subject", "raised", "message"), rows,
          nowrap=("id", "severity", "rule", "subject", "raised"), compact=True)


@app.command()
def ack(alert_id: AlertIdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Acknowledge an active alert (it stays active until its condition clears)."""
    with Api(url, token) as api:
        a = api.post(api_path("alerts", str(int(alert_id)), "ack"))
    if as_json:
        emit_json(a)
        return
    say("alert {} ({} {}) acknowledged", a["id"], a["rule"], a["subject"])
