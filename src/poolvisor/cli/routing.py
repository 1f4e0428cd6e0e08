"""`poolvisor router ...` (routers and their links) and `poolvisor route ...` (static routes, the
computed table, longest-prefix lookups): clients of the REST API.

A member token acts in its own project; with an admin token `--project` selects one (creation
defaults to 'default'; other commands find a router by name when it is unique across projects).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.errors import fail
from poolvisor.cli.render import emit_json, say, table

router_app = typer.Typer(help="Virtual routers (client of the REST API).", no_args_is_help=True)
route_app = typer.Typer(help="Routes of a router: static routes, the computed table, lookups.",
                        no_args_is_help=True)
RouterArg = Annotated[str, typer.Argument(help="Router name.", callback=name_argument)]
NetArg = Annotated[str, typer.Argument(help="Network name.", callback=name_argument)]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own).")]


def _interfaces(r: dict[str, Any]) -> None:
    table(f"Interfaces of {r['name']}", ("network", "address", "mac", "cost", "state"),
          [(i["network"], f"{i['address']}/{i['prefixlen']}", i["mac"], str(i["cost"]), i["state"])
           for i in r["interfaces"]])


def route_rows(routes: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for r in routes:
        via = ", ".join(f"{h} ({n})" for h, n in zip(r["nexthops"], r["interfaces"], strict=False)) \
            if r["nexthops"] else f"connected ({', '.join(r['interfaces'])})"
        if r.get("as_path"):
            via += f", AS path {' '.join(str(a) for a in r['as_path'])}"
        rows.append((r["prefix"], r["source"], f"{r['metric']:g}", via))
    return rows


@router_app.command("list")
def router_list(project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """List routers (admins: every project unless --project)."""
    with Api(url, token) as api:
        got = api.get(api_path("routers"), project=project)
    if as_json:
        emit_json(got)
        return
    table("Routers", ("name", "project", "protocol", "interfaces", "static routes"),
          [(r["name"], r["project"], r["protocol"],
            ", ".join(f"{i['network']}={i['address']}{'' if i['state'] == 'up' else ' (down)'}"
                      for i in r["interfaces"]) or "–", str(len(r["static_routes"]))) for r in got])


@router_app.command("show")
def router_show(name: RouterArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """Show a router's interfaces and static routes."""
    with Api(url, token) as api:
        r = api.get(api_path("routers", name), project=project)
    if as_json:
        emit_json(r)
        return
    say("router {}/{} ({})", r["project"], r["name"], r["protocol"])
    if r.get("asn") is not None:
        prefs = ", ".join(f"{k}={v}" for k, v in sorted(r.get("local_pref", {}).items())) or "default (100)"
        say("AS {}; local preference: {}", r["asn"], prefs)
    _interfaces(r)
    table("Static routes", ("prefix", "next hop", "metric"),
          [(s["prefix"], s["nexthop"], str(s["metric"])) for s in r["static_routes"]])


@router_app.command("create")
def router_create(name: RouterArg,
                  protocol: Annotated[str, typer.Option(
                      help="link-state, distance-vector, path-vector or static.")] = "link-state",
                  asn: Annotated[int | None, typer.Option(
                      min=1, max=4_294_967_294, help="path-vector: the router's AS number "
                      "[default: the first free from 64512]", show_default=False)] = None,
                  project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Create a router."""
    body: dict[str, Any] = {"name": name, "protocol": protocol, "project": project}
    if asn is not None:
        body["asn"] = asn
    with Api(url, token) as api:
        r = api.post(api_path("routers"), body)
    if as_json:
        emit_json(r)
    else:
        say("router {}/{} created ({}{})", r["project"], r["name"], r["protocol"],
            f", AS {r['asn']}" if r.get("asn") is not None else "")


@router_app.command("pref")
def router_pref(name: RouterArg,
                neighbour: Annotated[str, typer.Argument(help="Neighbour router.", callback=name_argument)],
                pref: Annotated[int | None, typer.Argument(
                    min=0, max=2**31 - 1, help="Local preference (default 100; higher wins).",
                    show_default=False)] = None,
                clear: Annotated[bool, typer.Option("--clear", help="Back to the default.")] = False,
                project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """Path-vector import policy: the local preference of the routes learned from a neighbour."""
    if (pref is None) == (not clear):
        raise fail("give a preference or --clear (not both)")
    with Api(url, token) as api:
        path = api_path("routers", name, "local-pref", neighbour)
        r = api.delete(path, project=project) if clear else \
            api.request("PUT", path, json={"pref": pref}, params={"project": project})
    if as_json:
        emit_json(r)
    else:
        say("router {}: routes from {} get local preference {}", name, neighbour,
            r["local_pref"].get(neighbour, "100 (default)"))


@router_app.command("delete")
def router_delete(name: RouterArg, project: ProjectOpt = None, url: UrlOpt = None,
                  token: TokenOpt = None) -> None:
    """Delete a router (its addresses go back to the networks)."""
    with Api(url, token) as api:
        api.delete(api_path("routers", name), project=project)
    say("router {} deleted", name)


@router_app.command("attach")
def router_attach(name: RouterArg, network: NetArg,
                  address: Annotated[str | None, typer.Option(help="Interface address [default: the "
                                                              "network's gateway, else the next free]")]
                  = None,
                  cost: Annotated[int, typer.Option(min=1, max=65535, help="Link cost.")] = 1,
                  project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Give the router an interface on a network."""
    body: dict[str, Any] = {"network": network, "cost": cost}
    if address is not None:
        body["address"] = address
    with Api(url, token) as api:
        i = api.post(api_path("routers", name, "interfaces"), body, project=project)
    if as_json:
        emit_json(i)
    else:
        say("router {} on {}: {}/{} (cost {})", name, i["network"], i["address"], i["prefixlen"], i["cost"])


@router_app.command("detach")
def router_detach(name: RouterArg, network: NetArg, project: ProjectOpt = None, url: UrlOpt = None,
                  token: TokenOpt = None) -> None:
    """Remove the router's interface on a network."""
    with Api(url, token) as api:
        api.delete(api_path("routers", name, "interfaces", network), project=project)
    say("router {} left {}", name, network)


@router_app.command("link")
def router_link(name: RouterArg, network: NetArg,
                state: Annotated[str | None, typer.Argument(help="up or down.")] = None,
                cost: Annotated[int | None, typer.Option(min=1, max=65535, help="New link cost.")] = None,
                project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """Take a router's link down or up (routes re-converge), or change its cost."""
    body: dict[str, Any] = {}
    if state is not None:
        body["state"] = state
    if cost is not None:
        body["cost"] = cost
    with Api(url, token) as api:
        i = api.post(api_path("routers", name, "interfaces", network, "link"), body, project=project)
    if as_json:
        emit_json(i)
    else:
        say("router {} link to {}: {} (cost {})", name, i["network"], i["state"], i["cost"])


@route_app.command("list")
def route_list(name: RouterArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
               as_json: JsonOpt = False) -> None:
    """The router's table as poolvisor computes it (connected, static, dynamic; ECMP)."""
    with Api(url, token) as api:
        t = api.get(api_path("routers", name, "routes"), project=project)
    if as_json:
        emit_json(t)
        return
    table(f"Routes of {t['router']} ({t['protocol']})", ("prefix", "source", "metric", "via"),
          route_rows(t["routes"]))
    extra = f", {t['rounds']} {t['protocol']} rounds" if t.get("rounds") is not None else ""
    say("[dim]computed in {} ms{}[/dim]", f"{t['compute_s'] * 1000:.1f}", extra)


@route_app.command("add")
def route_add(name: RouterArg, prefix: Annotated[str, typer.Argument(help="e.g. 0.0.0.0/0.")],
              via: Annotated[str, typer.Option("--via", help="Next-hop address.")],
              metric: Annotated[int, typer.Option(min=1, max=65535, help="Metric.")] = 1,
              project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
              as_json: JsonOpt = False) -> None:
    """Add a static route (its next hop must be on a network the router is attached to)."""
    with Api(url, token) as api:
        body = {"prefix": prefix, "nexthop": via, "metric": metric}
        r = api.post(api_path("routers", name, "routes"), body, project=project)
    if as_json:
        emit_json(r)
    else:
        say("route {} via {} added to {}", r["prefix"], r["nexthop"], name)


@route_app.command("delete")
def route_delete(name: RouterArg, prefix: Annotated[str, typer.Argument(help="The prefix.")],
                 via: Annotated[str | None, typer.Option("--via", help="Only via this next hop.")] = None,
                 project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete static routes to a prefix."""
    with Api(url, token) as api:
        api.delete(api_path("routers", name, "routes"), prefix=prefix, nexthop=via, project=project)
    say("route {} deleted from {}", prefix, name)


@route_app.command("lookup")
def route_lookup(name: RouterArg, address: Annotated[str, typer.Argument(help="Destination address.")],
                 project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Longest-prefix match: the route the router uses for an address."""
    with Api(url, token) as api:
        hit = api.get(api_path("routers", name, "lookup"), address=address, project=project)
    if as_json:
        emit_json(hit)
    elif hit["route"] is None:
        say("{}: no route to {}", name, hit["address"])
    else:
        prefix, source, metric, via = route_rows([hit["route"]])[0]
        say("{} -> {} via {} ({}, metric {})", hit["address"], prefix, via, source, metric)
