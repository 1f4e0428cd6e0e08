"""`poolvisor storage-pool ...` (pools, devices, rebalance) and `poolvisor volume ...` (client of
the REST API). Sizes are MiB, or a number with a unit: 512M, 20G, 2T (binary units)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.parse import number
from poolvisor.cli.render import emit_json, say, table
from poolvisor.cli.task import follow

pool_app = typer.Typer(help="Storage pools, their devices and rebalancing (client of the REST API).",
                       no_args_is_help=True)
device_app = typer.Typer(help="Devices of a storage pool: add, remove (drain), fail, delete.",
                         no_args_is_help=True)
pool_app.add_typer(device_app, name="device")
storage_app = typer.Typer(help="Storage pools, devices and rebalancing as `storage pool|device|rebalance` "
                          "(the same commands as `storage-pool`).", no_args_is_help=True)
storage_app.add_typer(pool_app, name="pool")
storage_app.add_typer(device_app, name="device")
volume_app = typer.Typer(help="Volumes: create, list, show, resize, snapshot, migrate, attach, detach, "
                         "delete (client of the REST API).", no_args_is_help=True)

PoolArg = Annotated[str, typer.Argument(help="Storage pool name.", callback=name_argument)]
DeviceArg = Annotated[str, typer.Argument(help="Device name.", callback=name_argument)]
VolumeArg = Annotated[str, typer.Argument(help="Volume name.", callback=name_argument)]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own).")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Print the task id instead of waiting.")]
_UNITS = {"": 1, "m": 1, "mi": 1, "g": 1024, "gi": 1024, "t": 1 << 20, "ti": 1 << 20}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]*?)(?:b|ib)?", re.IGNORECASE)


def size_mib(text: str) -> int:
    """'512' or '512M' -> 512, '20G' -> 20480, '1.5T' -> 1572864; whole MiB only."""
    m = _SIZE.fullmatch(text.strip())
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size (MiB, or a number with M, G or T)")
    mib = number(m.group(1)) * _UNITS[unit]
    if not mib.is_integer() or mib < 1:
        raise ValueError(f"{text!r} is not a whole number of MiB >= 1")
    return int(mib)


SizeArg = Annotated[int, typer.Argument(help="Size: MiB, or with a unit (512M, 20G, 2T).", parser=size_mib)]


def _gib(mib: int) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib} MiB"


def _device_rows(devs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(d["name"], d["host"] or "shared", d["device_class"], d["domain"], d["state"],
             f"{_gib(d['used_mib'])} / {_gib(d['capacity_mib'])}", f"{d['fragmentation']:.2f}") for d in devs]


# ---- storage pools -------------------------------------------------------------------------------
@pool_app.command("list")
def pool_list(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List storage pools with their space."""
    with Api(url, token) as api:
        pools = api.get(api_path("storage-pools"))
    if as_json:
        emit_json(pools)
        return
    table("Storage pools", ("name", "replicas", "access", "devices", "volumes", "used / usable",
                            "provisioned", "frag", "under-replicated"),
          [(p["name"], str(p["replicas"]),
            p["access"] + (f" ({p['compute_pool']})" if p["compute_pool"] else ""),
            str(len(p["devices"])), str(p["volumes"]),
            f"{_gib(p['space']['used_mib'] // p['replicas'])} / {_gib(p['space']['usable_capacity_mib'])}",
            f"{p['space']['provisioned_ratio']:.0%} of {p['oversubscription']:g}x",
            f"{p['space']['fragmentation']:.2f}", str(p["under_replicated"])) for p in pools])


@pool_app.command("show")
def pool_show(name: PoolArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show a storage pool: space, health and devices."""
    with Api(url, token) as api:
        p = api.get(api_path("storage-pools", name))
    if as_json:
        emit_json(p)
        return
    sp = p["space"]
    table(f"Storage pool {p['name']}", ("field", "value"), [
        ("replicas", str(p["replicas"])), ("access", p["access"]), ("compute pool", p["compute_pool"] or "–"),
        ("segment", _gib(p["segment_mib"])), ("object size", _gib(p["chunk_mib"])),
        ("volumes", str(p["volumes"])),
        ("raw capacity", _gib(sp["capacity_mib"])), ("raw used", _gib(sp["used_mib"])),
        ("raw free", _gib(sp["free_mib"])), ("usable capacity", _gib(sp["usable_capacity_mib"])),
        ("usable free", _gib(sp["usable_free_mib"])),
        ("provisioned", f"{_gib(sp['provisioned_mib'])} ({sp['provisioned_ratio']:.0%}, limit "
                        f"{p['oversubscription']:g}x)"),
        ("fragmentation", f"{sp['fragmentation']:.3f}"),
        ("under-replicated segments", str(p["under_replicated"]))])
    table("Devices", ("name", "host", "class", "domain", "state", "used / capacity", "frag"),
          _device_rows(p["devices"]))


@pool_app.command("create")
def pool_create(name: PoolArg,
                replicas: Annotated[int, typer.Option(help="Replicas per segment (distinct domains).")]
                = 3,
                oversubscription: Annotated[float, typer.Option(
                    parser=number, help="Provisioned sizes may reach capacity x this (thin volumes).")] = 1.0,
                segment: Annotated[int, typer.Option(
                    parser=size_mib, help="Segment size (volumes are placed in segments).")] = 1024,
                chunk: Annotated[int | None, typer.Option(
                    parser=size_mib, help="Object size of the bytes on directory devices (divides the "
                                          "segment; default 4M).")] = None,
                access: Annotated[str, typer.Option(help="network (every host) or local (hosts holding a "
                                                         "device).")] = "network",
                compute_pool: Annotated[str | None, typer.Option(
                    help="Only hosts of this compute pool reach it.")] = None,
                url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Create a storage pool (admin)."""
    body = {"name": name, "replicas": replicas, "oversubscription": oversubscription, "segment_mib": segment,
            "chunk_mib": chunk, "access": access, "compute_pool": compute_pool}
    with Api(url, token) as api:
        p = api.post(api_path("storage-pools"), body)
    if as_json:
        emit_json(p)
    else:
        say("storage pool {} created ({} replicas, {} access)", p["name"], p["replicas"], p["access"])


@pool_app.command("delete")
def pool_delete(name: PoolArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete an empty storage pool (admin)."""
    with Api(url, token) as api:
        api.delete(api_path("storage-pools", name))
    say("storage pool {} deleted", name)


@storage_app.command("rebalance")
@pool_app.command("rebalance")
def pool_rebalance(name: PoolArg,
                   dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show the plan.")] = False,
                   url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
                   no_wait: NoWaitOpt = False) -> None:
    """Move the replicas whose device changed (join, leave, failure): a task; --dry-run: the plan."""
    with Api(url, token) as api:
        if dry_run:
            plan = api.post(api_path("storage-pools", name, "rebalance"), None, dry_run="true")
            if as_json:
                emit_json(plan)
                return
            say("rebalance of {}: {} segments, {} replica copies, {} to copy, {} replicas dropped, {} lost",
                plan["pool"], plan["segments"], plan["copies"], _gib(plan["copy_mib"]), plan["removed"],
                plan["lost"])
            if plan["moves"]:
                table("First moves", ("volume", "segment", "size", "from", "to"),
                      [(m["volume"], str(m["segment"]), _gib(m["mib"]), ", ".join(m["from"]) or "–",
                        ", ".join(m["to"]) or "–") for m in plan["moves"]])
            return
        sent = api.post(api_path("storage-pools", name, "rebalance"))
        follow(api, sent, as_json, no_wait, lambda r, t: say(
            "{} rebalanced: {} segments, {} copies ({}), {} lost (task {})", name, r.get("segments"),
            r.get("copies"), _gib(int(r.get("copy_mib") or 0)), r.get("lost"), t["id"]))


@pool_app.command("scrub")
def pool_scrub(name: PoolArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Verify every replica of the pool's bytes, repair the bad ones and remove unreferenced object
    files (admin)."""
    with Api(url, token) as api:
        r = api.post(api_path("storage-pools", name, "scrub"))
    if as_json:
        emit_json(r)
    else:
        say("{} scrubbed: {} chunks verified, {} replicas repaired ({} MiB), {} chunks lost, {} unreferenced "
            "object files removed ({} MiB)", r["pool"], r["chunks"], r["repaired"], r["repaired_bytes"] >> 20,
            r["lost"], r["garbage_files"], r["garbage_bytes"] >> 20)


# ---- devices -------------------------------------------------------------------------------------
@device_app.command("add")
def device_add(pool: PoolArg, name: DeviceArg,
               capacity: Annotated[int, typer.Argument(parser=size_mib, help="Capacity (MiB, or 500G, 4T).")],
               host: Annotated[str | None, typer.Option(help="The host it is local to (default: shared).")]
               = None,
               device_class: Annotated[str, typer.Option("--class", help="Device class (ssd, hdd).")]
               = "ssd",
               domain: Annotated[str | None, typer.Option(help="Failure domain (default: its host, else its "
                                                               "name).")] = None,
               path: Annotated[str | None, typer.Option(help="Absolute directory on the server holding its "
                                                             "bytes (dir backend).")] = None,
               url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Add a device (admin); data moves onto it with the next rebalance."""
    body = {"name": name, "capacity_mib": capacity, "host": host, "device_class": device_class,
            "domain": domain, "path": path}
    with Api(url, token) as api:
        d = api.post(api_path("storage-pools", pool, "devices"), body)
    if as_json:
        emit_json(d)
    else:
        say("device {} added to {} ({} {}, domain {}); run 'poolvisor storage-pool rebalance {}'", d["name"],
            d["pool"], _gib(d["capacity_mib"]), d["device_class"], d["domain"], d["pool"])


def _set_state(pool: str, name: str, state: str, url: str | None, token: str | None, as_json: bool) -> None:
    with Api(url, token) as api:
        d = api.put(api_path("storage-pools", pool, "devices", name, "state"), {"state": state})
    if as_json:
        emit_json(d)
    else:
        say("device {} of {}: {}; run 'poolvisor storage-pool rebalance {}'", d["name"], d["pool"],
            d["state"], d["pool"])


@device_app.command("remove")
def device_remove(pool: PoolArg, name: DeviceArg, url: UrlOpt = None, token: TokenOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Drain a device (admin): the next rebalance moves its replicas off, then removes it."""
    _set_state(pool, name, "leaving", url, token, as_json)


@device_app.command("fail")
def device_fail(pool: PoolArg, name: DeviceArg, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """Mark a device failed (admin): its replicas are lost; the next rebalance re-replicates them."""
    _set_state(pool, name, "failed", url, token, as_json)


@device_app.command("delete")
def device_delete(pool: PoolArg, name: DeviceArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Delete a device that holds nothing, or a failed one (admin)."""
    with Api(url, token) as api:
        api.delete(api_path("storage-pools", pool, "devices", name))
    say("device {} deleted from {}", name, pool)


# ---- volumes -------------------------------------------------------------------------------------
def _volume_line(v: dict[str, Any]) -> tuple[str, ...]:
    return (v["name"], v["project"], v["pool"], _gib(v["size_mib"]), "thin" if v["thin"] else "thick",
            _gib(v["allocated_mib"]), f"{v['live_replicas']}/{v['replicas']}", v["state"],
            v["attached_to"] or "–")


VOLUME_COLUMNS = ("name", "project", "pool", "size", "type", "allocated", "replicas", "state", "attached to")


@volume_app.command("list")
def volume_list(project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """List volumes (admins: every project unless --project)."""
    with Api(url, token) as api:
        vols = api.get(api_path("volumes"), project=project)
    if as_json:
        emit_json(vols)
    else:
        table("Volumes", VOLUME_COLUMNS, [_volume_line(v) for v in vols])


@volume_app.command("show")
def volume_show(name: VolumeArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                as_json: JsonOpt = False) -> None:
    """Show a volume and where its replicas are."""
    with Api(url, token) as api:
        v = api.get(api_path("volumes", name), project=project)
    if as_json:
        emit_json(v)
        return
    table(f"Volume {v['project']}/{v['name']}", ("field", "value"), [
        *zip(VOLUME_COLUMNS[2:], _volume_line(v)[2:], strict=True),
        ("device class", v["device_class"] or "any"), ("segments", str(v["segments"])),
        ("extents", str(v["extents"]))])
    table("Replicas by device", ("device", "holds"), [(d, _gib(m)) for d, m in v["devices"].items()])


@volume_app.command("create")
def volume_create(name: VolumeArg, pool: PoolArg, size: SizeArg,
                  thick: Annotated[bool, typer.Option("--thick", help="Take its space now (default: thin).")]
                  = False,
                  device_class: Annotated[str | None, typer.Option("--class", help="Keep it on this device "
                                                                                   "class.")] = None,
                  replicas: Annotated[int | None, typer.Option(help="Replicas (default: the pool's).")]
                  = None,
                  project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Create a volume in a storage pool."""
    body: dict[str, Any] = {"name": name, "pool": pool, "size_mib": size, "thin": not thick,
                            "project": project}
    if device_class is not None:
        body["device_class"] = device_class
    if replicas is not None:
        body["replicas"] = replicas
    with Api(url, token) as api:
        v = api.post(api_path("volumes"), body)
    if as_json:
        emit_json(v)
    else:
        say("volume {}/{} created: {} {} in {}, {} replicas", v["project"], v["name"], _gib(v["size_mib"]),
            "thin" if v["thin"] else "thick", v["pool"], v["replicas"])


@volume_app.command("resize")
def volume_resize(name: VolumeArg, size: SizeArg, project: ProjectOpt = None, url: UrlOpt = None,
                  token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Grow a volume online (it never shrinks)."""
    with Api(url, token) as api:
        v = api.post(api_path("volumes", name, "resize"), {"size_mib": size}, project=project)
    if as_json:
        emit_json(v)
    else:
        say("volume {}/{} is now {}", v["project"], v["name"], _gib(v["size_mib"]))


@volume_app.command("snapshot")
def volume_snapshot(name: VolumeArg,
                    snapshot: Annotated[str, typer.Argument(help="Snapshot name.", callback=name_argument)],
                    project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                    as_json: JsonOpt = False) -> None:
    """Take a read-only snapshot (a full copy of the written segments) of a volume."""
    with Api(url, token) as api:
        v = api.post(api_path("volumes", name, "snapshot"), {"name": snapshot}, project=project)
    if as_json:
        emit_json(v)
    else:
        say("snapshot {}/{} of {} taken ({} allocated)", v["project"], v["name"], v["snapshot_of"],
            _gib(v["allocated_mib"]))


@volume_app.command("migrate")
def volume_migrate(name: VolumeArg,
                   pool: Annotated[str, typer.Option("--pool", help="Target storage pool.",
                                                     callback=name_argument)],
                   project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                   as_json: JsonOpt = False, no_wait: NoWaitOpt = False) -> None:
    """Move a volume to another storage pool while it stays in use (a task: pre-copy, then a
    short switch during which writes wait; the source copies are freed)."""
    with Api(url, token) as api:
        sent = api.post(api_path("volumes", name, "migrate"), {"pool": pool}, project=project)
        follow(api, sent, as_json, no_wait, lambda r, t: say(
            "volume {} migrated {} -> {}: {} segments, {} pre-copied, {} chunk(s) copied again at the "
            "switch ({} s; task {})", name, r.get("from_pool"), r.get("to_pool"), r.get("segments"),
            _gib(int(r.get("precopy_mib") or 0)), r.get("switch_chunks"),
            f"{float(r.get('switch_s') or 0):.3f}", t["id"]))


@volume_app.command("attach")
def volume_attach(name: VolumeArg,
                  workload: Annotated[str, typer.Argument(help="Workload (same project).",
                                                          callback=name_argument)],
                  project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Attach a volume to a workload whose host reaches its pool."""
    with Api(url, token) as api:
        v = api.post(api_path("volumes", name, "attach"), {"workload": workload}, project=project)
    if as_json:
        emit_json(v)
    else:
        say("volume {}/{} attached to {}", v["project"], v["name"], v["attached_to"])


@volume_app.command("detach")
def volume_detach(name: VolumeArg, project: ProjectOpt = None, url: UrlOpt = None, token: TokenOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Detach a volume from its workload."""
    with Api(url, token) as api:
        v = api.post(api_path("volumes", name, "detach"), project=project)
    if as_json:
        emit_json(v)
    else:
        say("volume {}/{} detached", v["project"], v["name"])


@volume_app.command("delete")
def volume_delete(name: VolumeArg, project: ProjectOpt = None, url: UrlOpt = None,
                  token: TokenOpt = None) -> None:
    """Delete a detached volume."""
    with Api(url, token) as api:
        api.delete(api_path("volumes", name), project=project)
    say("volume {} deleted", name)
