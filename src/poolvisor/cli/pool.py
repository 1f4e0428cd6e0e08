"""`poolvisor pool ...`: list, show, create, delete (API client)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.render import amounts, emit_json, say, table, usage

app = typer.Typer(help="Pools of hosts (client of the REST API).", no_args_is_help=True)
PoolArg = Annotated[str, typer.Argument(help="Pool name.", callback=name_argument)]


def _show(p: dict[str, Any]) -> None:
    table(f"Pool {p['name']}", ("field", "value"), [
        ("description", p.get("description") or "–"), ("hosts", str(p["hosts"])),
        ("capacity", amounts(p["capacity"])), ("allocated", amounts(p["allocated"])),
        ("free", amounts(p["free"]))])


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List pools with their used/allocatable vCPU and memory."""
    with Api(url, token) as api:
        pools = api.get(api_path("pools"))
    if as_json:
        emit_json(pools)
        return
    table("Pools", ("name", "hosts", "vcpu used/alloc.", "memory_mib used/alloc.", "description"),
          [(p["name"], p["hosts"], usage(p["allocated"], p["free"], "vcpu"),
            usage(p["allocated"], p["free"], "memory_mib"), p.get("description") or "") for p in pools])


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


@app.command()
def consolidate(
    name: PoolArg,
    apply: Annotated[bool, typer.Option("--apply", help="Execute the moves (live migrations).")] = False,
    max_migrations: Annotated[int | None, typer.Option("--max-migrations", min=0,
                                                       help="At most this many migrations.")] = None,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Plan the fewest active hosts for a pool (migrations with a cost); --apply executes the plan."""
    body: dict[str, Any] = {"apply": apply}
    if max_migrations is not None:
        body["max_migrations"] = max_migrations
    with Api(url, token) as api:
        out = api.post(api_path("pools", name, "consolidation-plan"), body)
    if as_json:
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
        say("executed {} migration(s)", len(out["executed"]))
        for f in out["failed"]:
            say("[red]failed:[/red] {}", f)
