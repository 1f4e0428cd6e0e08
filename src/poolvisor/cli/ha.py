"""`poolvisor ha status|admission`: the HA loop's view (heartbeats, failures handled with their
times, workloads waiting to restart) and admission control (client of the REST API)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.errors import fail
from poolvisor.cli.parse import parse_map
from poolvisor.cli.render import emit_json, say, table

app = typer.Typer(help="HA: host heartbeats, fencing and restarts; admission control (client of the "
                  "REST API).", no_args_is_help=True)


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


@app.command()
def status(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Hosts not answering, host failures handled (seconds to declare and to restore), workloads
    waiting to restart with their reason, admission headroom."""
    with Api(url, token) as api:
        st: dict[str, Any] = api.get(api_path("ha"))
    if as_json:
        emit_json(st)
        return
    cfg = st["settings"]
    say("HA: heartbeat every {} s, suspect after {} miss(es), fenced after {}; {} step(s){}",
        f"{cfg['interval_s']:g}", cfg["suspect_after"], cfg["fail_after"], st["steps"],
        "" if st["leader"] else " (not the leader: idle)")
    bad = [h for h in st["hosts"] if h["status"] != "ok"]
    if bad:
        table("Hosts", ("host", "status", "missed", "fence failure"),
              [(h["host"], h["status"], str(h["missed"]), h["fence_reason"] or "") for h in bad])
    if st["failures"]:
        table("Host failures", ("host", "detect (s)", "restore (s)", "workloads", "restarted"),
              [(f["host"], _s(f["detect_s"]), _s(f["restore_s"]), str(f["workloads"]), str(f["restarted"]))
               for f in st["failures"]])
    if st["pending"]:
        table("Waiting to restart", ("workload", "priority", "reason"),
              [(p["workload"], str(p["priority"]), p["reason"]) for p in st["pending"]])
    adm = st["admission"]
    g = adm["global"]
    say("admission: tolerate {} host failure(s), reserve {}", g["tolerate_failures"],
        ", ".join(f"{k} {v:g} %" for k, v in g["reserve_percent"].items()) or "nothing")
    table("Admission headroom (global)", ("resource", "limit", "allocated", "headroom"),
          [(r, f"{h['limit']:g}", f"{h['allocated']:g}", f"{h['headroom']:g}")
           for r, h in adm["headroom"].items()])


@app.command()
def admission(
    tolerate: Annotated[int | None, typer.Option(
        "--tolerate", min=0, max=1000, help="Host failures whose workloads must still fit.")] = None,
    reserve: Annotated[str | None, typer.Option(
        "--reserve", help="Percent of capacity kept free per resource, e.g. vcpu=20,memory_mib=25.")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="This pool's policy (else the global one).")]
    = None,
    clear: Annotated[bool, typer.Option("--clear", help="With --pool: the pool follows the global "
                                        "policy again.")] = False,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show admission control, or set it (--tolerate and/or --reserve; admins)."""
    with Api(url, token) as api:
        if clear:
            if pool is None or tolerate is not None or reserve is not None:
                raise fail("--clear needs --pool and nothing else", 2)
            api.delete(api_path("ha", "admission", "pools", pool))
            got: dict[str, Any] = api.get(api_path("ha", "admission"))
        elif tolerate is None and reserve is None:
            got = api.get(api_path("ha", "admission"))
        else:
            pct = parse_map(reserve, "--reserve", float) if reserve else {}
            body: dict[str, Any] = {"tolerate_failures": tolerate or 0, "reserve_percent": pct}
            if pool is not None:
                body["pool"] = pool
            got = api.put(api_path("ha", "admission"), body)
    if as_json:
        emit_json(got)
        return
    rows = [("(global)", got["global"])] + sorted(got["pools"].items())
    table("HA admission control", ("scope", "tolerate failures", "reserve"),
          [(scope, str(p["tolerate_failures"]),
            ", ".join(f"{k} {v:g} %" for k, v in p["reserve_percent"].items()) or "–") for scope, p in rows])
