"""`poolvisor pool ...`: list, show, create, delete (API client)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.render import (
    CAPACITY_CAPTION,
    allocated_of,
    amounts,
    emit_json,
    free_of,
    measured,
    measured_note,
    say,
    table,
)
from poolvisor.cli.task import finish, queued, wait_for

app = typer.Typer(help="Pools of hosts (client of the REST API).", no_args_is_help=True)
PoolArg = Annotated[str, typer.Argument(help="Pool name.", callback=name_argument)]


def stranded_text(stranded: dict[str, float] | None) -> str:
    """"gpu 4", "none" (scarce resources, none stranded) or "–" (the pool has no scarce resource)."""
    if not stranded:
        return "–"
    return amounts(stranded) if any(stranded.values()) else "none"


def _show(p: dict[str, Any]) -> None:
    stranded = stranded_text(p.get("stranded"))
    where = p.get("stranded_hosts") or []
    table(f"Pool {p['name']}", ("field", "value"), [
        ("description", p.get("description") or "–"), ("hosts", str(p["hosts"])),
        ("allocatable", amounts(p.get("allocatable") or p["capacity"])),
        ("allocated", amounts(p["allocated"])),
        ("free", amounts(p["free"])), ("used (measured)", measured_note(p)),
        ("stranded", f"{stranded} on {', '.join(where)}" if where else stranded),
    ], caption=STRANDED_CAPTION)


STRANDED_CAPTION = ("stranded: free scarce resources (gpu, ...) on up hosts that cannot take even the "
                    "smallest request needing them")


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List pools: allocated of allocatable, free and measured vCPU and memory, stranded resources."""
    with Api(url, token) as api:
        pools = api.get(api_path("pools"))
    if as_json:
        emit_json(pools)
        return
    columns = ("name", "hosts", "vcpu\nalloc", "vcpu\nfree", "vcpu\nused", "mem GiB\nalloc", "mem GiB\nfree",
               "stranded", "description")
    table("Pools", columns,
          [(p["name"], p["hosts"], allocated_of(p["allocated"], p["free"], "vcpu"),
            free_of(p["free"], "vcpu"), measured(p), allocated_of(p["allocated"], p["free"], "memory_mib"),
            free_of(p["free"], "memory_mib"), stranded_text(p.get("stranded")), p.get("description") or "")
           for p in pools],
          nowrap=columns[:-1], compact=True, caption=f"{CAPACITY_CAPTION}; {STRANDED_CAPTION}")


@app.command()
def show(name: PoolArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show one pool."""
    with Api(url, token) as api:
        p = api.get(api_path("pools", name))
    if as_json:
        emit_json(p)
    else:
        _show(p)


@app.command()
def create(name: PoolArg, description: Annotated[str, typer.Option(help="Free text.")] = "",
           url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Create an empty pool (admin)."""
    with Api(url, token) as api:
        p = api.post(api_path("pools"), {"name": name, "description": description})
    if as_json:
        emit_json(p)
    else:
        say("pool {} created", p["name"])


@app.command()
def delete(name: PoolArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a pool that has no hosts (admin)."""
    with Api(url, token) as api:
        api.delete(api_path("pools", name))
    say("pool {} deleted", name)


@app.command("queue-discipline")
def queue_discipline(name: PoolArg, discipline: Annotated[str, typer.Argument(
        help="fifo, priority, sjf, round-robin, drf or ps-n.")],
        url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Set the order the pool's queued creations are served in (admin)."""
    with Api(url, token) as api:
        r = api.put(api_path("pools", name, "queue-discipline"), {"discipline": discipline})
    say("pool {}: queue discipline {}", r["pool"], r["discipline"])


@app.command("allocation-policy")
def allocation_policy(name: PoolArg, policy: Annotated[str | None, typer.Argument(
        help="min (the reservation), max (the limit) or balanced; omitted: show it",
        show_default=False)] = None,
        url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show or set (admin) what placement sets aside for workloads declaring reservation/limit/shares."""
    with Api(url, token) as api:
        r = api.get(api_path("pools", name, "allocation-policy")) if policy is None else \
            api.put(api_path("pools", name, "allocation-policy"), {"policy": policy})
    say("pool {}: allocation policy {}", r["pool"], r["policy"])


@app.command()
def consolidate(
    name: PoolArg,
    apply: Annotated[bool, typer.Option("--apply", help="Execute the moves (live migrations).")] = False,
    max_migrations: Annotated[int | None, typer.Option("--max-migrations", min=0,
                                                       help="At most this many migrations.")] = None,
    policy: Annotated[str, typer.Option("--policy", help="pack (fewest hosts by reservations), spread, "
                                                          "adaptive, or e.g. thr-mmt")] = "pack",
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="With --apply: print the task id instead of "
                                                           "waiting.")] = False,
) -> None:
    """Plan the balancing of a pool (default policy pack: fewest active hosts, migrations with a
    cost); --apply executes the plan as a task (waits with a progress bar unless --no-wait)."""
    body: dict[str, Any] = {"apply": apply, "policy": policy}
    if max_migrations is not None:
        body["max_migrations"] = max_migrations
    task = None
    with Api(url, token) as api:
        out = api.post(api_path("pools", name, "consolidation-plan"), body)
        if apply:
            if no_wait:
                queued(out, as_json)
                return
            task = wait_for(api, out, show_progress=not as_json)
    if task is not None:
        if as_json:  # the consolidation's outcome (as before tasks), and which task ran it
            emit_json({**task["result"], "task": task["id"]} if task["result"] else task)
        finish(task)
        out = task["result"]
    if as_json:
        if task is None:
            emit_json(out)
        return
    plan = out["plan"]
    table(f"Consolidation of pool {name}" + ("" if apply else " (plan only)"),
          ("workload", "from", "to", "reason"),
          [(m["workload"], m["from"] or "–", m["to"] or "–", m["reason"]) for m in plan["moves"]])
    say("{}", plan["summary"])
    say("hosts emptied: {}", ", ".join(out["hosts_emptied"]) or "none")
    for n in plan["notes"]:
        say("[dim]{}[/dim]", n)
    if apply:
        assert task is not None
        say("executed {} migration(s) (task {})", len(out["executed"]), task["id"])
        for f in out["failed"]:
            say("[red]failed:[/red] {}", f)
