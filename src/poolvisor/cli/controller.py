"""`poolvisor controller status|pause|resume`: the live controller (client of the REST API)."""

from __future__ import annotations

from typing import Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.render import emit_json, say, table

app = typer.Typer(
    help="The live controller (balancing, consolidation, power): its last round, pause and "
    "resume (client of the REST API; admins).",
    no_args_is_help=True,
)


def _show(c: dict[str, Any]) -> None:
    last = c.get("last_round") or {}
    loop = c.get("loop") or {}
    state = "paused" if c["paused"] else "running"
    if c.get("changed_by"):
        state += f" (since {(c.get('changed_at') or '')[:19].replace('T', ' ')}, by {c['changed_by']})"
    rows = [("state", state), ("policy", c["policy"])]
    if loop:
        rows.append(
            (
                "loop",
                f"every {loop['interval_s']:g} s, {loop['rounds']} round(s), "
                f"{loop['skipped_paused']} skipped paused, {loop['skipped_not_leader']} not leader, "
                f"{loop['errors']} error(s)" + (f": {loop['last_error']}" if loop["last_error"] else ""),
            )
        )
    else:
        rows.append(("loop", "not running in this server (--controller-interval 0)"))
    if last:
        rows.append(("last round", (last.get("at") or "")[:19].replace("T", " ") + " UTC"))
        rows.append(("samples recorded", str(last.get("samples", 0))))
        rows.append(
            ("imbalance", ", ".join(f"{p}: {v:.3f}" for p, v in (last.get("imbalance") or {}).items()) or "–")
        )
        for m in last.get("migrations", []):
            rows.append(
                ("migrate", f"{m['workload']} {m['from']} -> {m['to']} ({m['rule']}, task {m['task']})")
            )
        for p in last.get("power", []):
            what = f"{p['host']} {p['action']}: {p['rule']}"
            rows.append(("power", what + (f" (skipped: {p['skipped']})" if p.get("skipped") else "")))
        if last.get("held_count"):
            rows.append(("held back", str(last["held_count"])))
            for h in last.get("held", [])[:5]:
                rows.append(("", f"{h['workload']} {h['from']} -> {h['to']} ({h['rule']}): {h['reason']}"))
        if last.get("contended_count"):
            rows.append(("contended", f"{last['contended_count']} workload(s) given less than they ask"))
            for c in last.get("contended", [])[:5]:
                got = ", ".join(f"{r} {a:g}/{c['wanted'].get(r, a):g}"
                                for r, a in sorted(c["granted"].items()))
                rows.append(("", f"{c['workload']} on {c['host']}: granted/wanted {got}"))
        for n in last.get("notes", []):
            rows.append(("note", n))
    else:
        rows.append(("last round", "none yet"))
    table("Controller", ("", ""), rows, compact=True)


@app.command()
def status(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Paused or running, this server's loop, and what the last round did."""
    with Api(url, token) as api:
        c = api.get(api_path("controller"))
    if as_json:
        emit_json(c)
        return
    _show(c)


@app.command()
def pause(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Stop the reconcile rounds (every server of the database; queued migrations still run)."""
    with Api(url, token) as api:
        c = api.post(api_path("controller", "pause"))
    if as_json:
        emit_json(c)
        return
    say("controller paused")


@app.command()
def resume(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Start the reconcile rounds again."""
    with Api(url, token) as api:
        c = api.post(api_path("controller", "resume"))
    if as_json:
        emit_json(c)
        return
    say("controller running")
