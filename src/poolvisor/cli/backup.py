"""`poolvisor backup-target add|list|delete`, `poolvisor vm backup create|list|show|delete|restore`
and `poolvisor backup schedule set|list|delete` (clients of the REST API; docs/backups.md).

Create and restore are tasks: the CLI waits with a progress bar unless --no-wait."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.errors import fail
from poolvisor.cli.render import emit_json, say, table
from poolvisor.cli.task import follow

target_app = typer.Typer(help="Backup targets: directories on the server that backups are copied into.",
                         no_args_is_help=True)
vm_app = typer.Typer(help="Backups of a workload: take, list, show, delete, restore (onto any host).",
                     no_args_is_help=True)
backup_app = typer.Typer(help="Backup schedules (per workload or per group, with retention).",
                         no_args_is_help=True)
schedule_app = typer.Typer(help="Back workloads up on a schedule, keeping the newest N.",
                           no_args_is_help=True)
backup_app.add_typer(schedule_app, name="schedule")

NameArg = Annotated[str, typer.Argument(help="Workload name.", callback=name_argument)]
BackupArg = Annotated[str, typer.Argument(help="Backup name.", callback=name_argument)]
TargetArg = Annotated[str, typer.Argument(help="Backup target name.", callback=name_argument)]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Print the task id instead of waiting.")]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own).")]
TargetOpt = Annotated[str | None, typer.Option("--target", "-t",
                                                help="Backup target (default: the only one).")]
BackupNameOpt = Annotated[str | None, typer.Option("--name", "-n",
                                                    help="Backup name (default: b<UTC time>).")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Restore as a new workload of this name.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="Host to restore onto (default: placement).")]
GroupOpt = Annotated[str | None, typer.Option("--group", "-g", help="Back up every member of this group.")]
KeepOpt = Annotated[int, typer.Option("--keep", min=1, max=1000, help="Scheduled backups kept per workload.")]
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_every(text: str) -> float:
    """'90s', '30m', '6h', '1d', '2w' or plain seconds -> seconds (finite, > 0)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", str(text).lower())
    value = float(m.group(1)) * UNITS[m.group(2) or "s"] if m else math.nan
    if not math.isfinite(value) or value <= 0:
        raise fail(f"--every: expected a duration like 30m, 6h or 1d, got {text!r}", 2)
    return value


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


# ---- backup-target ---------------------------------------------------------------------------
@target_app.command()
def add(name: TargetArg, path: Annotated[str, typer.Argument(help="Absolute directory on the server.")],
        url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Add a backup target (admins): an existing, writable directory on the server."""
    with Api(url, token) as api:
        t = api.post(api_path("backup-targets"), {"name": name, "path": path})
    if as_json:
        emit_json(t)
        return
    say("backup target {} at {}", t["name"], t["path"])


@target_app.command("list")
def list_targets(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List backup targets."""
    with Api(url, token) as api:
        ts = api.get(api_path("backup-targets"))
    if as_json:
        emit_json(ts)
        return
    table("Backup targets", ("name", "kind", "path", "backups"),
          [(t["name"], t["kind"], t["path"], str(t["backups"])) for t in ts])


@target_app.command("delete")
def delete_target(name: TargetArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a backup target (admins; refused while backups or schedules use it)."""
    with Api(url, token) as api:
        api.delete(api_path("backup-targets", name))
    say("backup target {} deleted", name)


# ---- vm backup -------------------------------------------------------------------------------
@vm_app.command()
def create(name: NameArg, target: TargetOpt = None,
           backup: BackupNameOpt = None, project: ProjectOpt = None, url: UrlOpt = None,
           token: TokenOpt = None, as_json: JsonOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Back a workload up into a target (a task)."""
    body = {k: v for k, v in (("target", target), ("name", backup)) if v is not None}
    with Api(url, token) as api:
        sent = api.post(api_path("workloads", name, "backups"), body, project=project)
        follow(api, sent, as_json, no_wait, lambda r, t: say(
            "{}: backup {} taken on {}: {} MiB, sha256 {} (task {})", name, r.get("backup"), r.get("host"),
            _mib(int(r.get("size_bytes", 0))), str(r.get("sha256", ""))[:16], t["id"]))


@vm_app.command("list")
def list_(name: NameArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """List a workload's backups, oldest first (also after the workload was deleted)."""
    with Api(url, token) as api:
        bs = api.get(api_path("workloads", name, "backups"), project=project)
    if as_json:
        emit_json(bs)
        return
    table(f"Backups of {name}",
          ("name", "state", "restores to", "MiB", "target", "host", "scheduled", "created"),
          [(b["name"], b["state"], b["workload_state"], _mib(b["size_bytes"]), b["target"], b["host"],
            "yes" if b["scheduled"] else "no", b["created_at"][:19].replace("T", " ")) for b in bs])


@vm_app.command()
def show(name: NameArg, backup: BackupArg, project: ProjectOpt = None, url: UrlOpt = None,
         token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show one backup: where it is, its checksum and the spec a restore re-creates."""
    with Api(url, token) as api:
        b = api.get(api_path("workloads", name, "backups", backup), project=project)
    if as_json:
        emit_json(b)
        return
    spec = b["spec"]
    demand = ", ".join(f"{k}={v:g}" for k, v in sorted(spec.get("demand", {}).items()))
    table(f"Backup {backup} of {b['workload']}", ("field", "value"), [
        ("state", b["state"]), ("target", b["target"]), ("taken on", b["host"]),
        ("restores to", b["workload_state"]), ("size MiB", _mib(b["size_bytes"])), ("sha256", b["sha256"]),
        ("flavor", spec.get("flavor") or "–"), ("demand", demand), ("group", spec.get("group") or "–"),
        ("networks", ", ".join(spec.get("networks") or []) or "–"), ("created", b["created_at"])])


@vm_app.command()
def delete(name: NameArg, backup: BackupArg, project: ProjectOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Delete a backup (its row and its files in the target)."""
    with Api(url, token) as api:
        api.delete(api_path("workloads", name, "backups", backup), project=project)
    say("{}: backup {} deleted", name, backup)


@vm_app.command()
def restore(name: NameArg, backup: BackupArg,
            as_name: AsOpt = None, host: HostOpt = None, project: ProjectOpt = None, url: UrlOpt = None,
            token: TokenOpt = None, as_json: JsonOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Bring a workload back from a backup, through placement, onto any host (a task). Without --as,
    the workload must be gone or lost (its host failed)."""
    body = {k: v for k, v in (("as_name", as_name), ("host", host)) if v is not None}
    def restored(r: dict[str, Any], t: dict[str, Any]) -> None:
        say("{} restored from backup {} onto {} ({}; taken on {}) (task {})", str(r.get("workload")), backup,
            r.get("host"), r.get("state"), r.get("from_host"), t["id"])
        if r.get("rule"):
            say("placement: {}", r["rule"])

    with Api(url, token) as api:
        sent = api.post(api_path("workloads", name, "backups", backup, "restore"), body, project=project)
        follow(api, sent, as_json, no_wait, restored)


# ---- backup schedule -------------------------------------------------------------------------
@schedule_app.command("set")
def set_(workload: Annotated[str | None, typer.Argument(help="Workload to back up (or --group).")] = None,
         group: GroupOpt = None,
         every: Annotated[str, typer.Option("--every", help="How often: 30m, 6h, 1d...")] = "1d",
         keep: KeepOpt = 7,
         target: TargetOpt = None, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Create or replace the backup schedule of a workload or a group; the first run is due at once."""
    if (workload is None) == (group is None):
        raise fail("give a workload or --group (exactly one)", 2)
    for v in (workload, group):
        if v is not None:
            name_argument(v)
    body = {"workload": workload, "group": group, "every_s": parse_every(every), "keep": keep,
            "target": target, "project": project}
    with Api(url, token) as api:
        s = api.put(api_path("backup-schedules"), {k: v for k, v in body.items() if v is not None})
    if as_json:
        emit_json(s)
        return
    say("schedule {}: {} {} every {} s into {}, keeping {} (next {})", s["id"], s["scope"], s["name"],
        f"{s['every_s']:g}", s["target"], s["keep"], s["next_at"][:19].replace("T", " "))


@schedule_app.command("list")
def list_schedules(project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                   as_json: JsonOpt = False) -> None:
    """List backup schedules."""
    with Api(url, token) as api:
        ss = api.get(api_path("backup-schedules"), project=project)
    if as_json:
        emit_json(ss)
        return
    table("Backup schedules", ("id", "project", "scope", "name", "every s", "keep", "target", "next", "last"),
          [(str(s["id"]), s["project"], s["scope"], s["name"], f"{s['every_s']:g}", str(s["keep"]),
            s["target"], s["next_at"][:19].replace("T", " "), (s["last_at"] or "–")[:19].replace("T", " "))
           for s in ss])


@schedule_app.command("delete")
def delete_schedule(schedule_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="Schedule id.")],
                    project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a schedule (its backups stay)."""
    with Api(url, token) as api:
        api.delete(api_path("backup-schedules", str(schedule_id)), project=project)
    say("backup schedule {} deleted", schedule_id)
