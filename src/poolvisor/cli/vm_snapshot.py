"""`poolvisor vm snapshot create|list|delete|restore`: workload snapshots (client of the REST API).

Create and restore are tasks: the CLI waits with a progress bar unless --no-wait."""

from __future__ import annotations

from typing import Annotated

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.render import emit_json, say, table
from poolvisor.cli.task import follow

app = typer.Typer(help="Snapshots of a workload: take, list, delete, restore.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Workload name.", callback=name_argument)]
SnapArg = Annotated[str, typer.Argument(help="Snapshot name.", callback=name_argument)]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Print the task id instead of waiting.")]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own).")]


@app.command()
def create(name: NameArg, snapshot: SnapArg, project: ProjectOpt = None, url: UrlOpt = None,
           token: TokenOpt = None, as_json: JsonOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Take a snapshot of a workload (a task)."""
    with Api(url, token) as api:
        sent = api.post(api_path("workloads", name, "snapshots"), {"name": snapshot}, project=project)
        follow(api, sent, as_json, no_wait, lambda r, t: say(
            "{}: snapshot {} taken on {} (task {})", name, snapshot, r.get("host"), t["id"]))


@app.command("list")
def list_(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """List a workload's snapshots, oldest first."""
    with Api(url, token) as api:
        snaps = api.get(api_path("workloads", name, "snapshots"), project=project)
    if as_json:
        emit_json(snaps)
        return
    table(f"Snapshots of {name}", ("name", "state", "restores to", "size MiB", "host", "created"),
          [(s["name"], s["state"], s["workload_state"], f"{s['size_bytes'] / 2**20:.0f}", s["host"],
            s["created_at"]) for s in snaps])


@app.command()
def delete(name: NameArg, snapshot: SnapArg, project: ProjectOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Delete a snapshot."""
    with Api(url, token) as api:
        api.delete(api_path("workloads", name, "snapshots", snapshot), project=project)
    say("{}: snapshot {} deleted", name, snapshot)


@app.command()
def restore(name: NameArg, snapshot: SnapArg, project: ProjectOpt = None, url: UrlOpt = None,
            token: TokenOpt = None, as_json: JsonOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Return a workload to a snapshot (a task)."""
    with Api(url, token) as api:
        sent = api.post(api_path("workloads", name, "snapshots", snapshot, "restore"), project=project)
        follow(api, sent, as_json, no_wait, lambda r, t: say(
            "{}: restored to snapshot {} ({}) (task {})", name, snapshot, r.get("state"), t["id"]))
