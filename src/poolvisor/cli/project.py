"""`poolvisor project ...`: list, create, mint member tokens, set and show quotas (API client)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.parse import number
from poolvisor.cli.render import emit_json, printable, say, table

app = typer.Typer(help="Projects own workloads (client of the REST API).", no_args_is_help=True)
ProjectArg = Annotated[str, typer.Argument(help="Project name.", callback=name_argument)]


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List projects (members see their own)."""
    with Api(url, token) as api:
        projects = api.get(api_path("projects"))
    if as_json:
        emit_json(projects)
    else:
        table("Projects", ("name", "workloads", "weight"),
              [(p["name"], p["workloads"], f"{p.get('weight', 1.0):g}") for p in projects])


WeightOpt = Annotated[float | None, typer.Option(
    "--weight", help="Fair-share weight in the queue (drf): 2 is served twice the share of 1 [default: 1]",
    parser=number, show_default=False)]


@app.command()
def create(name: ProjectArg, weight: WeightOpt = None, url: UrlOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Create a project (admin)."""
    body: dict[str, Any] = {"name": name}
    if weight is not None:
        body["weight"] = weight
    with Api(url, token) as api:
        p = api.post(api_path("projects"), body)
    if as_json:
        emit_json(p)
    else:
        say("project {} created", p["name"])


@app.command("set-weight")
def set_weight(name: ProjectArg,
               weight: Annotated[float, typer.Argument(help="Weight, > 0 (every project starts at 1)",
                                                       parser=number, show_default=False)],
               url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Set the project's weight in the fair share between projects of one class (admin)."""
    with Api(url, token) as api:
        p = api.put(api_path("projects", name, "weight"), {"weight": weight})
    if as_json:
        emit_json(p)
    else:
        say("project {}: fair-share weight {}", p["name"], f"{p['weight']:g}")


@app.command()
def token(name: ProjectArg, url: UrlOpt = None,
          admin_token: Annotated[str | None, typer.Option(
              "--token", envvar="POOLVISOR_TOKEN", help="Admin bearer token [default: token file]",
              show_default=False)] = None,
          as_json: JsonOpt = False) -> None:
    """Mint a member token for the project (admin); printed once, stored only as a hash."""
    with Api(url, admin_token) as api:
        t = api.post(api_path("tokens"), {"role": "member", "project": name})
    if as_json:
        emit_json(t)
    else:
        typer.echo(printable(t["token"]))


quota_app = typer.Typer(help="A project's quota and creation rate limit (set: admin; show: its tokens).",
                        no_args_is_help=True)
app.add_typer(quota_app, name="quota")


@quota_app.command("set")
def quota_set(
    name: ProjectArg,
    limits: Annotated[list[str] | None, typer.Argument(
        help="RESOURCE=LIMIT pairs: vcpu, memory_mib, disk_gib, gpu, any declared resource, or "
        "workloads (how many may hold capacity); e.g. vcpu=16 memory_mib=65536 workloads=10. "
        "A resource not named is unlimited.", show_default=False)] = None,
    rate: Annotated[str | None, typer.Option(
        "--rate", help="The project's own limit on workload creation requests: R, R/s, R/m or R/h "
        "[default: the server's --rate-limit]", show_default=False)] = None,
    burst: Annotated[int | None, typer.Option(
        "--burst", min=1, max=1_000_000, help="With --rate: requests that may arrive at once "
        "[default: one second's worth]", show_default=False)] = None,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Replace the project's quota (admin): exactly the limits given (none: no quota) and --rate.
    A limit below what the project holds refuses new workloads and takes nothing away."""
    from poolvisor.cli.errors import fail
    from poolvisor.cli.parse import default_burst, number, parse_map, parse_rate

    body: dict[str, Any] = {"limits": parse_map(",".join(limits), "limits", number) if limits else {}}
    if rate is not None:
        per_s = parse_rate(rate, "--rate")
        body["rate_limit"] = {"rate_per_s": per_s,
                              "burst": burst if burst is not None else default_burst(per_s)}
    elif burst is not None:
        raise fail("--burst needs --rate")
    with Api(url, token) as api:
        q = api.put(api_path("projects", name, "quota"), body)
    if as_json:
        emit_json(q)
    else:
        say("quota of project {} set: {}", q["project"], _describe(q))


@quota_app.command("show")
def quota_show(name: ProjectArg, url: UrlOpt = None, token: TokenOpt = None,
               as_json: JsonOpt = False) -> None:
    """What the project holds against its limits, and its rate limit."""
    with Api(url, token) as api:
        u = api.get(api_path("projects", name, "usage"))
    if as_json:
        emit_json(u)
        return
    limits, avail = u["limits"], u["available"]
    table(f"Quota of {printable(u['project'])}", ("resource", "used", "limit", "available"), [
        (k, f"{v:g}", f"{limits[k]:g}" if k in limits else "–", f"{avail[k]:g}" if k in avail else "–")
        for k, v in u["used"].items()],
        caption=f"rate limit: {_rate(u['rate_limit'])}")


def _rate(r: dict[str, Any] | None) -> str:
    return "the server's default" if r is None else f"{r['rate_per_s']:g}/s, burst {r['burst']}"


def _describe(q: dict[str, Any]) -> str:
    parts = [f"{k}={v:g}" for k, v in q["limits"].items()] or ["no limits"]
    return ", ".join(parts) + f"; rate limit: {_rate(q['rate_limit'])}"
