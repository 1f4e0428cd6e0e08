"""`poolvisor ip ...`: address pools (pool create/list/show/delete) and their addresses (alloc,
reserve, release, list) — client of the REST API.

Pools belong to projects: a member token acts in its own project; with an admin token `--project`
selects one (creation defaults to 'default'; other commands find a pool by name when it is unique
across projects). A network's pool has the network's name.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.render import emit_json, say, table

app = typer.Typer(help="IP address pools and allocations (client of the REST API).", no_args_is_help=True)
pool_app = typer.Typer(help="Address pools: create, list, show, delete.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")
PoolArg = Annotated[str, typer.Argument(help="Address pool (or network) name.", callback=name_argument)]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own).")]
AddressArg = Annotated[str, typer.Argument(help="An address (IPv4, IPv6 or MAC).")]


def _used(p: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(p["used"].items())) or "–"


def span(r: dict[str, Any]) -> str:
    return r["first"] if r["first"] == r["last"] else f"{r['first']} - {r['last']}"


def _ranges(title: str, ranges: list[dict[str, Any]]) -> None:
    table(title, ("range", "size", "kind", "owner"),
          [(span(r), str(r["size"]), r["kind"], r["owner"] or "–") for r in ranges])


@pool_app.command("list")
def pool_list(project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
              as_json: JsonOpt = False) -> None:
    """List address pools with their usage (admins: every project, and the global MAC pool)."""
    with Api(url, token) as api:
        pools = api.get(api_path("ip-pools"), project=project)
    if as_json:
        emit_json(pools)
        return
    table("Address pools", ("name", "project", "cidr", "size", "free", "used", "network"),
          [(p["name"], p["project"] or "–", p["cidr"], str(p["size"]), str(p["free"]), _used(p),
            p["network"] or "–") for p in pools])


@pool_app.command("show")
def pool_show(name: PoolArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
              as_json: JsonOpt = False) -> None:
    """Show one pool."""
    with Api(url, token) as api:
        p = api.get(api_path("ip-pools", name), project=project)
    if as_json:
        emit_json(p)
        return
    table(f"Address pool {p['name']}", ("field", "value"), [
        ("project", p["project"] or "–"), ("cidr", p["cidr"]), ("addresses", f"{p['first']} - {p['last']}"),
        ("size", str(p["size"])), ("free", str(p["free"])), ("used", _used(p)),
        ("network", p["network"] or "–")])


@pool_app.command("create")
def pool_create(name: PoolArg, cidr: Annotated[str, typer.Argument(help="Subnet, e.g. 10.0.0.0/16.")],
                project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """Create a standalone pool of the subnet's host addresses."""
    with Api(url, token) as api:
        p = api.post(api_path("ip-pools"), {"name": name, "cidr": cidr, "project": project})
    if as_json:
        emit_json(p)
    else:
        say("address pool {} created: {} - {} ({} addresses)", p["name"], p["first"], p["last"], p["size"])


@pool_app.command("delete")
def pool_delete(name: PoolArg, project: ProjectOpt = None, url: UrlOpt = None,
                token: TokenOpt = None) -> None:
    """Delete a standalone pool with no allocated address."""
    with Api(url, token) as api:
        api.delete(api_path("ip-pools", name), project=project)
    say("address pool {} deleted", name)


@app.command()
def alloc(name: PoolArg,
          address: Annotated[str | None, typer.Option("--address", "-a", help="Exactly this address.")]
          = None,
          count: Annotated[int, typer.Option("--count", "-n", min=1, help="How many addresses.")] = 1,
          owner: Annotated[str, typer.Option(help="Free-text note of who holds them.")] = "",
          project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Allocate the next free address(es) of a pool, or a given one."""
    body: dict[str, Any] = {"count": count, "owner": owner}
    if address is not None:
        body["address"] = address
    with Api(url, token) as api:
        got = api.post(api_path("ip-pools", name, "allocations"), body, project=project)
    if as_json:
        emit_json(got)
        return
    for r in got:
        say("{}", span(r))


@app.command()
def reserve(name: PoolArg, first: AddressArg, last: AddressArg,
            note: Annotated[str, typer.Option(help="Why it is reserved.")] = "",
            project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """Reserve the range FIRST..LAST (all of it must be free)."""
    with Api(url, token) as api:
        r = api.post(api_path("ip-pools", name, "reservations"), {"first": first, "last": last, "note": note},
                     project=project)
    if as_json:
        emit_json(r)
    else:
        say("reserved {} ({} addresses)", span(r), r["size"])


@app.command()
def release(name: PoolArg, first: AddressArg,
            last: Annotated[str | None, typer.Argument(help="End of a range (default: FIRST).")] = None,
            project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """Release an allocated or reserved address or range."""
    body: dict[str, Any] = {"first": first}
    if last is not None:
        body["last"] = last
    with Api(url, token) as api:
        r = api.post(api_path("ip-pools", name, "release"), body, project=project)
    if as_json:
        emit_json(r)
    else:
        say("released {}", span(r))


@app.command("list")
def list_(name: PoolArg,
          free: Annotated[bool, typer.Option("--free", help="List the free ranges instead.")] = False,
          limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many ranges.")] = 100,
          after: Annotated[str | None, typer.Option(help="Start after this address.")] = None,
          project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """List a pool's allocated (or free) ranges in address order."""
    with Api(url, token) as api:
        got = api.get(api_path("ip-pools", name, "ranges"), project=project, free="true" if free else None,
                      limit=limit, after=after)
    if as_json:
        emit_json(got)
    else:
        _ranges(f"{'Free' if free else 'Allocated'} ranges of {name}", got)
