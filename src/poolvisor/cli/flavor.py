"""`poolvisor flavor ...`: list, create, delete (API client)."""

from __future__ import annotations

from typing import Annotated

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.parse import parse_map
from poolvisor.cli.render import amounts, emit_json, say, table

app = typer.Typer(help="Flavors: named demands for workloads (client of the REST API).", no_args_is_help=True)
FlavorArg = Annotated[str, typer.Argument(help="Flavor name.", callback=name_argument)]


@app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List flavors."""
    with Api(url, token) as api:
        flavors = api.get(api_path("flavors"))
    if as_json:
        emit_json(flavors)
    else:
        table("Flavors", ("name", "demand"), [(f["name"], amounts(f["demand"])) for f in flavors])


@app.command()
def create(name: FlavorArg,
           demand: Annotated[str, typer.Option(help="Resources, e.g. 'vcpu=2,memory_mib=4096'.")],
           url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Create a flavor (admin)."""
    with Api(url, token) as api:
        f = api.post(api_path("flavors"), {"name": name, "demand": parse_map(demand, "--demand", float)})
    if as_json:
        emit_json(f)
    else:
        say("flavor {}: {}", f["name"], amounts(f["demand"]))


@app.command()
def delete(name: FlavorArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a flavor (admin)."""
    with Api(url, token) as api:
        api.delete(api_path("flavors", name))
    say("flavor {} deleted", name)
