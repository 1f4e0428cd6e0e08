"""`poolvisor network ...`: virtual networks of a project (create, list, show, delete, nics) and
`apply`, which realizes a project's networks and routers as Linux namespaces (client of the REST API).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.render import emit_json, say, table

app = typer.Typer(help="Virtual networks (client of the REST API).", no_args_is_help=True)
NetArg = Annotated[str, typer.Argument(help="Network name.", callback=name_argument)]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own).")]


def nic_table(title: str, nics: list[dict[str, Any]]) -> None:
    table(title, ("workload", "nic", "network", "address", "mac", "gateway"),
          [(n["workload"], f"eth{n['index']}", n["network"], f"{n['address']}/{n['prefixlen']}", n["mac"],
            n["gateway"] or "–") for n in nics])


@app.command("list")
def list_(project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """List networks (admins: every project unless --project)."""
    with Api(url, token) as api:
        nets = api.get(api_path("networks"), project=project)
    if as_json:
        emit_json(nets)
        return
    table("Networks", ("name", "project", "cidr", "gateway", "free", "nics", "routers"),
          [(n["name"], n["project"], n["cidr"], n["gateway"] or "–", f"{n['free']}/{n['size']}",
            str(n["nics"]), ", ".join(n["routers"]) or "–") for n in nets])


@app.command()
def show(name: NetArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Show one network and its NICs."""
    with Api(url, token) as api:
        n = api.get(api_path("networks", name), project=project)
        nics = api.get(api_path("networks", name, "nics"), project=n["project"])
    if as_json:
        emit_json({**n, "nic_list": nics})
        return
    table(f"Network {n['project']}/{n['name']}", ("field", "value"), [
        ("cidr", n["cidr"]), ("gateway", n["gateway"] or "–"), ("dhcp", n.get("dhcp") or "–"),
        ("free", f"{n['free']}/{n['size']}"),
        ("routers", ", ".join(n["routers"]) or "–")])
    nic_table("NICs", nics)


@app.command()
def create(name: NetArg, cidr: Annotated[str, typer.Argument(help="Subnet, e.g. 10.0.1.0/24.")],
           gateway: Annotated[str | None, typer.Option(help="Gateway address [default: first usable].")]
           = None,
           no_gateway: Annotated[bool, typer.Option("--no-gateway", help="No gateway address.")] = False,
           project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Create a network with its own address pool."""
    body: dict[str, Any] = {"name": name, "cidr": cidr, "project": project, "no_gateway": no_gateway}
    if gateway is not None:
        body["gateway"] = gateway
    with Api(url, token) as api:
        n = api.post(api_path("networks"), body)
    if as_json:
        emit_json(n)
    else:
        say("network {}/{} created: {} (gateway {})", n["project"], n["name"], n["cidr"],
            n["gateway"] or "none")


@app.command()
def delete(name: NetArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a network without NICs and router interfaces."""
    with Api(url, token) as api:
        api.delete(api_path("networks", name), project=project)
    say("network {} deleted", name)


@app.command()
def nics(name: NetArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """List the NICs on a network."""
    with Api(url, token) as api:
        got = api.get(api_path("networks", name, "nics"), project=project)
    if as_json:
        emit_json(got)
    else:
        nic_table(f"NICs on {name}", got)


def show_workload_nics(url: str | None, token: str | None, project: str, workload: str) -> None:
    """Print a workload's NICs (after `vm create --network`)."""
    with Api(url, token) as api:
        got = api.get(api_path("nics"), project=project, workload=workload)
    for n in got:
        say("  eth{} on {}: {}/{} mac {}", n["index"], n["network"], n["address"], n["prefixlen"], n["mac"])


PrefixOpt = Annotated[str, typer.Option(help="Namespace name prefix (1..8 lowercase letters/digits).")]


@app.command()
def apply(project: ProjectOpt = None, prefix: PrefixOpt = "pv", url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Realize a project's networks and routers as Linux namespaces on the server's machine and
    program the routes (admin; needs root there). Run again after a link fails: routes re-converge."""
    body: dict[str, Any] = {"prefix": prefix}
    if project is not None:
        body["project"] = project
    with Api(url, token) as api:
        r = api.post(api_path("dataplane", "apply"), body)
    if as_json:
        emit_json(r)
        return
    table(f"Dataplane of {r['project']} ({r['prefix']})", ("object", "namespace"),
          sorted(r["namespaces"].items()))
    rounds = f", {r['rounds']} routing rounds" if r.get("rounds") is not None else ""
    say("{} created, {} routes programmed; routes computed in {} ms{}", len(r["created"]), r["routes"],
        f"{r['recompute_s'] * 1000:.1f}", rounds)
    if r["down_links"]:
        say("[yellow]links down:[/yellow] {}", ", ".join(r["down_links"]))


@app.command()
def teardown(project: ProjectOpt = None, prefix: PrefixOpt = "pv", url: UrlOpt = None,
             token: TokenOpt = None) -> None:
    """Delete a project's namespaces (admin)."""
    body: dict[str, Any] = {"prefix": prefix}
    if project is not None:
        body["project"] = project
    with Api(url, token) as api:
        r = api.post(api_path("dataplane", "teardown"), body)
    say("{} namespace(s) deleted", len(r["deleted"]))
