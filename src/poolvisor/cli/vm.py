"""`poolvisor vm ...`: create (with the placement explanation), list, show, act, migrate, delete.

Workloads belong to projects. A member token acts in its own project; with an admin token,
`--project` selects one (create defaults to the project 'default'; other commands find a
workload by name when it is unique across projects).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli import vm_snapshot
from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.errors import fail
from poolvisor.cli.gpus import shares_text
from poolvisor.cli.network import show_workload_nics
from poolvisor.cli.parse import number, parse_map
from poolvisor.cli.render import amounts, emit_json, explanation, say, table
from poolvisor.cli.task import follow

app = typer.Typer(help="Workloads (VMs and containers): placement and lifecycle (client of the REST API).",
                  no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Workload name.", callback=name_argument)]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Print the task id instead of waiting.")]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own).")]


def _show(w: dict[str, Any]) -> None:
    table(f"Workload {w['project']}/{w['name']}", ("field", "value"), [
        ("state", w["state"]), ("host", w.get("host") or "–"), ("kind", w["kind"]),
        ("demand", amounts(w["demand"])), ("priority", str(w["priority"])),
        ("class", w.get("priority_class") or "normal"), ("group", w.get("group") or "–"),
        *([("reason", w["state_reason"])] if w.get("state_reason") else []),
        ("created", w["created_at"]), *([("GPUs", shares_text(w["gpus"]))] if w.get("gpus") else []),
        *_resources_rows(w)])


def _resources_rows(w: dict[str, Any]) -> list[tuple[str, str]]:
    """The declaration, the policy that sized the claim and what the host grants it now."""
    rows = []
    for r, d in sorted((w.get("resources") or {}).items()):
        rows.append((f"{r} (res/limit/shares)", f"{d['reservation']:g} / {d['limit']:g} / {d['shares']:g}"))
    if w.get("sized_by"):
        rows.append(("sized by", f"allocation policy {w['sized_by']}"))
    if w.get("granted"):
        rows.append(("granted now", amounts(w["granted"])))
    return rows


@app.command("list")
def list_(project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """List workloads (admins: all projects unless --project)."""
    with Api(url, token) as api:
        wls = api.get(api_path("workloads"), project=project)
    if as_json:
        emit_json(wls)
        return
    table("Workloads", ("name", "project", "state", "host", "kind", "demand"),
          [(w["name"], w["project"], w["state"], w.get("host") or "–", w["kind"], amounts(w["demand"]))
           for w in wls])


@app.command()
def show(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
         as_json: JsonOpt = False, explain: Annotated[bool, typer.Option(
             help="Also print the placement explanation.")] = False) -> None:
    """Show one workload."""
    with Api(url, token) as api:
        w = api.get(api_path("workloads", name), project=project)
    if as_json:
        emit_json(w)
        return
    _show(w)
    if explain:
        explanation(w.get("explanation"))


@app.command()
def create(
    name: NameArg,
    flavor: Annotated[str | None, typer.Option("--flavor", "-f", help="Flavor name.")] = None,
    demand: Annotated[str | None, typer.Option(help="Explicit demand, e.g. 'vcpu=2,memory_mib=4096'.")]
    = None,
    project: ProjectOpt = None,
    kind: Annotated[str, typer.Option(help="vm or container.")] = "vm",
    priority: Annotated[int, typer.Option(help="-1000..1000.")] = 0,
    priority_class: Annotated[str, typer.Option("--class", help=(
        "Priority class: spot, low, normal, high, system; when nothing fits, a class above spot may "
        "preempt lower classes."))] = "normal",
    group: Annotated[str | None, typer.Option(help="Affinity group name.")] = None,
    group_policy: Annotated[str | None, typer.Option(
        help="affinity, anti-affinity, soft-affinity, soft-anti-affinity, domain-spread.")] = None,
    require: Annotated[str | None, typer.Option(help="Required host labels, e.g. 'gpu=true'.")] = None,
    forbid: Annotated[str | None, typer.Option(help="Forbidden host labels.")] = None,
    pool: Annotated[str | None, typer.Option(help="Only hosts of this pool.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only place and explain; allocate nothing.")]
    = False,
    explain: Annotated[bool, typer.Option("--explain", help=(
        "Full explanation: every filter's rejection counts and reasons (one pass over all hosts); "
        "without it, the chosen host, top candidates and candidate counts."))] = False,
    network: Annotated[list[str] | None, typer.Option(help="A NIC on this network (repeatable).")] = None,
    queue: Annotated[bool, typer.Option("--queue", help=(
        "When nothing fits now, wait in the pool's queue (created when capacity frees)."))] = False,
    duration: Annotated[float | None, typer.Option(
        parser=number, help="Declared run time in seconds (for sjf).")] = None,
    reservation: Annotated[str | None, typer.Option(help=(
        "Guaranteed minimum per resource, e.g. 'vcpu=1' [default: the limit]"))] = None,
    limit: Annotated[str | None, typer.Option(help=(
        "Most it may use per resource, e.g. 'vcpu=4' [default: the demand]"))] = None,
    shares: Annotated[str | None, typer.Option(help=(
        "Weight under contention per resource, e.g. 'vcpu=2000' [default: 1000]"))] = None,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Place and create a workload; prints where it went and why. With --reservation, --limit or
    --shares, the pool's allocation policy (min, max, balanced) decides what is set aside."""
    if (flavor is None) == (demand is None):
        raise fail("give exactly one of --flavor or --demand")
    body: dict[str, Any] = {
        "name": name, "project": project, "flavor": flavor,
        "demand": parse_map(demand, "--demand", float) if demand else None,
        "kind": kind, "priority": priority, "priority_class": priority_class, "group": group,
        "group_policy": group_policy,
        "required_labels": parse_map(require, "--require", str) if require else None,
        "forbidden_labels": parse_map(forbid, "--forbid", str) if forbid else None, "pool": pool,
        "networks": network or None, "wait": queue or None, "duration_s": duration,
        "reservation": parse_map(reservation, "--reservation", float) if reservation else None,
        "limit": parse_map(limit, "--limit", float) if limit else None,
        "shares": parse_map(shares, "--shares", float) if shares else None,
    }
    with Api(url, token) as api:
        w = api.post(api_path("workloads"), {k: v for k, v in body.items() if v is not None},
                     dry_run="true" if dry_run else None, explain="full" if explain else None)
    if as_json:
        emit_json(w)
        return
    if "attempts" in w:  # 202: the queue entry
        say("{}/{} queued ({}): {}", w["project"], w["name"], w["priority_class"], w.get("last_error") or "")
        return
    if dry_run:
        say("dry run: {}/{} would go to [bold]{}[/bold]; nothing allocated",
            w["project"], w["name"], w["host"])
    else:
        say("{} {}/{} placed on [bold]{}[/bold] ({})",
            w["kind"], w["project"], w["name"], w["host"], w["state"])
        if w.get("gpus"):
            say("GPUs: {}", shares_text(w["gpus"]))
        for p in (w.get("explanation") or {}).get("preempted") or []:
            say("preempted {} ({}) to make room", p["workload"], p["class"])
        if network:
            show_workload_nics(url, token, w["project"], w["name"])
    explanation(w.get("explanation"))


@app.command("create-batch")
def create_batch(
    flavor: Annotated[str, typer.Option("--flavor", "-f", help="Flavor of every workload.")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000, help="How many workloads.")],
    prefix: Annotated[str, typer.Option(help="Names are PREFIX-1 .. PREFIX-N.")] = "vm",
    project: ProjectOpt = None,
    pool: Annotated[str | None, typer.Option(help="Only hosts of this pool.")] = None,
    partial: Annotated[bool, typer.Option("--partial", help="Create what fits instead of all-or-nothing.")]
    = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only plan and explain; allocate nothing.")]
    = False,
    network: Annotated[list[str] | None, typer.Option(help="A NIC on this network for each (repeatable).")]
    = None,
    reservation: Annotated[str | None, typer.Option(help=(
        "Guaranteed minimum per resource of each, e.g. 'vcpu=1' [default: the limit]"))] = None,
    limit: Annotated[str | None, typer.Option(help=(
        "Most each may use per resource, e.g. 'vcpu=4' [default: the demand]"))] = None,
    shares: Annotated[str | None, typer.Option(help=(
        "Weight of each under contention per resource, e.g. 'vcpu=2000' [default: 1000]"))] = None,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Place N workloads at once with the packing engine (fewest hosts), all-or-nothing. With
    --reservation, --limit or --shares each is sized by the pool's allocation policy, as vm create."""
    nets: dict[str, Any] = {"networks": network} if network else {}
    for key, raw, opt in (("reservation", reservation, "--reservation"), ("limit", limit, "--limit"),
                          ("shares", shares, "--shares")):
        if raw:
            nets[key] = parse_map(raw, opt, float)
    body: dict[str, Any] = {"workloads": [{"name": f"{prefix}-{i}", "flavor": flavor, **nets}
                                          for i in range(1, count + 1)], "all_or_nothing": not partial}
    body.update({k: v for k, v in (("project", project), ("pool", pool)) if v is not None})
    with Api(url, token) as api:
        out = api.post(api_path("workloads", "batch"), body, dry_run="true" if dry_run else None)
    if as_json:
        emit_json(out)
        return
    table("Batch placement" + (" (dry run: nothing allocated)" if dry_run else ""),
          ("workload", "host", "state", "reason"),
          [(w["name"], w.get("host") or "–", w["state"],
            (w.get("explanation") or {}).get("rule", "").removeprefix("batch placement: "))
           for w in out["workloads"]])
    plan = out["plan"]
    say("{}; lower bound {} host(s)", plan["summary"], plan["lower_bound"])
    if out["unplaced"]:
        say("[yellow]not placed:[/yellow] {}", ", ".join(out["unplaced"]))


def _act(action: str, name: str, project: str | None, url: str | None, token: str | None, as_json: bool,
         body: dict[str, Any] | None = None) -> None:
    with Api(url, token) as api:
        w = api.post(api_path("workloads", name, action), body, project=project)
    if as_json:
        emit_json(w)
    else:
        say("{}/{}: {} on {}", w["project"], w["name"], w["state"], w.get("host") or "–")


@app.command()
def start(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Start a stopped workload."""
    _act("start", name, project, url, token, as_json)


@app.command()
def stop(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Stop a workload (it keeps its allocation)."""
    _act("stop", name, project, url, token, as_json)


@app.command()
def suspend(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """Suspend a running workload."""
    _act("suspend", name, project, url, token, as_json)


@app.command()
def resume(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Resume a suspended workload."""
    _act("resume", name, project, url, token, as_json)


@app.command()
def migrate(name: NameArg,
            to: Annotated[str | None, typer.Option("--to", help="Target host (default: placement chooses).")]
            = None,
            project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
            as_json: JsonOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Move a workload to another host (a task: waits with a progress bar unless --no-wait)."""
    with Api(url, token) as api:
        sent = api.post(api_path("workloads", name, "migrate"), {"host": to} if to else None, project=project)
        follow(api, sent, as_json, no_wait, lambda r, t: say(
            "{}: migrated {} -> {} (task {})", t["subject"].removeprefix("workload/"), r.get("from"),
            r.get("to"), t["id"]))


@app.command()
def delete(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a workload and release its allocation."""
    with Api(url, token) as api:
        api.delete(api_path("workloads", name), project=project)
    say("workload {} deleted", name)


app.add_typer(vm_snapshot.app, name="snapshot")


@app.command("queued")
def queued_list(project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """Creation requests waiting for capacity (vm create --queue)."""
    with Api(url, token) as api:
        rows = api.get(api_path("queue"), project=project)
    if as_json:
        emit_json(rows)
        return
    table("Queued creations", ("name", "project", "pool", "class", "demand", "attempts", "waiting since"),
          [(q["name"], q["project"], q.get("pool") or "–", q["priority_class"], amounts(q["demand"]),
            str(q["attempts"]), q["created_at"]) for q in rows])


@app.command("unqueue")
def unqueue(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Withdraw a queued creation request."""
    with Api(url, token) as api:
        api.delete(api_path("queue", name), project=project)
    say("queued request {} withdrawn", name)
