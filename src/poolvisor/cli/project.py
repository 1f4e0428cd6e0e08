"""`poolvisor project ...`: list, create, and mint member tokens (API client)."""

from __future__ import annotations

from typing import Annotated

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
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
        table("Projects", ("name", "workloads"), [(p["name"], p["workloads"]) for p in projects])


@app.command()
def create(name: ProjectArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Create a project (admin)."""
    with Api(url, token) as api:
        p = api.post(api_path("projects"), {"name": name})
    if as_json:
        emit_json(p)
    else:
        say("project {} created", p["name"])


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
