"""`poolvisor host ...`: list, show, create/add (with its driver, URI and fence method), change
state, delete (API client). Sim fault injection is `poolvisor sim ...` (cli/sim.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.gpus import devices_text, parse_gpus
from poolvisor.cli.parse import parse_map
from poolvisor.cli.render import (
    CAPACITY_CAPTION,
    allocated_of,
    amounts,
    emit_json,
    free_of,
    measured,
    measured_note,
    say,
    table,
)
from poolvisor.cli.task import follow

app = typer.Typer(help="Hosts: capacity, labels, state (client of the REST API).", no_args_is_help=True)
HostArg = Annotated[str, typer.Argument(help="Host name.", callback=name_argument)]


def _rows(hosts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(h["name"], h.get("pool") or "–", h["state"], h.get("domain", ""),
             allocated_of(h["allocated"], h["free"], "vcpu"), free_of(h["free"], "vcpu"), measured(h),
             allocated_of(h["allocated"], h["free"], "memory_mib"), free_of(h["free"], "memory_mib"),
             h.get("workloads", 0)) for h in hosts]


COLUMNS = ("name", "pool", "state", "domain", "vcpu\nalloc", "vcpu\nfree", "vcpu\nused",
           "mem GiB\nalloc", "mem GiB\nfree", "work-\nloads")


@app.command("list")
def list_(pool: Annotated[str | None, typer.Option(help="Only this pool's hosts.")] = None,
          url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List hosts."""
    with Api(url, token) as api:
        hosts = api.get(api_path("hosts"), pool=pool)
    if as_json:
        emit_json(hosts)
    else:
        table("Hosts", COLUMNS, _rows(hosts), nowrap=COLUMNS, compact=True, caption=CAPACITY_CAPTION)


def show_host(h: dict[str, Any]) -> None:
    table(f"Host {h['name']}", ("field", "value"), [
        ("pool", h.get("pool") or "–"), ("state", h["state"]), ("domain", h["domain"]),
        ("capacity", amounts(h["capacity"])), ("overcommit", amounts(h["overcommit"])),
        ("allocatable", amounts(h.get("allocatable"))), ("allocated", amounts(h["allocated"])),
        ("free", amounts(h["free"])), ("used (measured)", measured_note(h)),
        ("labels", ", ".join(f"{k}={v}" for k, v in h["labels"].items()) or "–"),
        ("driver", h.get("driver", "sim") + (f" {h['uri']}" if h.get("uri") else "")),
        ("fence", h.get("fence", "driver")),
        ("workloads", str(h["workloads"])),
        ("max workloads", str(h["max_workloads"]) if h["max_workloads"] else "unlimited"),
        *([("GPUs", devices_text(h["gpus"]))] if h.get("gpus") else []),
    ])


@app.command()
def show(name: HostArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show one host."""
    with Api(url, token) as api:
        h = api.get(api_path("hosts", name))
    if as_json:
        emit_json(h)
    else:
        show_host(h)


@app.command()
def create(
    name: HostArg,
    capacity: Annotated[str | None, typer.Option(
        help="Resources, e.g. 'vcpu=32,memory_mib=131072' [default: what the node's driver reports]",
        show_default=False)] = None,
    pool: Annotated[str | None, typer.Option(help="Pool to join.")] = None,
    overcommit: Annotated[str | None, typer.Option(help="Ratios, e.g. 'vcpu=4'.")] = None,
    labels: Annotated[str | None, typer.Option(help="Labels, e.g. 'ssd=true,rack=r1'.")] = None,
    domain: Annotated[str, typer.Option(help="Failure domain (rack, zone).")] = "default",
    max_workloads: Annotated[int, typer.Option(help="0 = unlimited.")] = 0,
    driver: Annotated[str, typer.Option(help="Driver that runs the host: sim, libvirt, lxc.")] = "sim",
    uri: Annotated[str, typer.Option(help="Where the driver reaches the node, e.g. qemu+ssh://h3/system "
                                     "or sim://?vcpu=32&memory_mib=131072.")] = "",
    fence: Annotated[str, typer.Option(help="Fence method: driver, sim, none, or 'command:PROGRAM [ARGS]' "
                                       "(run with the host name; exit 0 = fenced).")] = "driver",
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
    gpus: Annotated[str | None, typer.Option(help=(
        "GPU devices as COUNTxMODEL:MEMORY_MIB groups, e.g. '4xA100:40960' (sets capacity gpu); "
        "without it, capacity gpu=N gives N anonymous devices."))] = None,
) -> None:
    """Register a host run by a driver (admin); `host add` is the same command."""
    body = {"name": name, "capacity": parse_map(capacity, "--capacity", float) if capacity else None,
            "pool": pool, "overcommit": parse_map(overcommit, "--overcommit", float) if overcommit else None,
            **({"gpus": parse_gpus(gpus)} if gpus is not None else {}),
            "labels": parse_map(labels, "--labels", str) if labels else None,
            "domain": domain, "max_workloads": max_workloads, "driver": driver, "uri": uri, "fence": fence}
    with Api(url, token) as api:
        h = api.post(api_path("hosts"), body)
    if as_json:
        emit_json(h)
    else:
        show_host(h)


app.command("add", help="Register a host run by a driver (admin); same as `host create`.")(create)


@app.command()
def state(
    name: HostArg,
    new_state: Annotated[str, typer.Argument(metavar="STATE", help="up, maintenance, fenced or down.")],
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Change a host's state (admin)."""
    with Api(url, token) as api:
        h = api.put(api_path("hosts", name, "state"), {"state": new_state})
    if as_json:
        emit_json(h)
    else:
        say("host {}: {}", h["name"], h["state"])


@app.command()
def delete(name: HostArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Remove a host that holds no workloads (admin)."""
    with Api(url, token) as api:
        api.delete(api_path("hosts", name))
    say("host {} deleted", name)


@app.command()
def drain(name: HostArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
          no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the task id instead of waiting.")]
          = False) -> None:
    """Live-migrate every workload off a host, then put it in maintenance (admin; a task: waits
    with a progress bar unless --no-wait). Workloads that cannot move are listed with the reason."""
    def drained(r: dict[str, Any], t: dict[str, Any]) -> None:
        say("host {}: drained ({} workload(s) moved), now in maintenance (task {})", name,
            len(r.get("moved", [])), t["id"])

    def stuck(r: dict[str, Any], _t: dict[str, Any]) -> None:
        if r.get("stuck"):
            table(f"Host {name}: workloads that cannot move", ("workload", "why"),
                  [(w["workload"], w["reason"]) for w in r["stuck"]])

    with Api(url, token) as api:
        follow(api, api.post(api_path("hosts", name, "drain"), None), as_json, no_wait, drained, stuck)


@app.command()
def undrain(name: HostArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Return a drained (maintenance) or draining host to service (admin)."""
    with Api(url, token) as api:
        h = api.post(api_path("hosts", name, "undrain"), None)
    if as_json:
        emit_json(h)
    else:
        say("host {}: {}", h["name"], h["state"])
