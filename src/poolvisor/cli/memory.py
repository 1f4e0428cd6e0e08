"""Memory pool commands, registered under `poolvisor pool` (memory-report, memory-overcommit,
memory-reclaim) and `poolvisor vm` (reserve-memory); clients of the REST API."""

from __future__ import annotations

from typing import Annotated

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, name_argument
from poolvisor.cli.parse import number
from poolvisor.cli.render import emit_json, say, table

PoolArg = Annotated[str, typer.Argument(help="Pool name.", callback=name_argument)]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins; members use their own)."
    ),
]


def memory_report(
    name: PoolArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Stranded capacity (free where no flavor fits), what still fits, and the pool's memory."""
    with Api(url, token) as api:
        r = api.get(api_path("pools", name, "memory-report"))
    if as_json:
        emit_json(r)
        return
    m = r["memory"]
    table(
        f"Memory of pool {r['pool']} ({r['hosts']} up hosts)",
        ("field", "value"),
        [
            (
                "overcommit",
                ", ".join(f"{k}x on {v:g} hosts" for k, v in r["memory_overcommit"].items()) or "–",
            ),
            ("physical", f"{m['physical']:g} MiB"),
            ("allocatable", f"{m['allocatable']:g} MiB"),
            ("allocated", f"{m['allocated']:g} MiB"),
            ("reserved", f"{m['reserved']:g} MiB"),
            ("ballooned away", f"{m['ballooned_away']:g} MiB"),
            ("largest placeable flavor", r["largest_flavor"] or "none"),
        ],
    )
    table(
        f"Fragmentation ({r['stranded_hosts']} hosts fit no flavor)",
        ("resource", "free", "stranded"),
        [(k, f"{v:g}", f"{r['stranded'][k]:g}") for k, v in r["free"].items()],
    )
    table(
        "Flavors that still fit",
        ("flavor", "instances"),
        [(f["flavor"], str(f["fits"])) for f in r["flavors"]],
    )


def memory_overcommit(
    name: PoolArg,
    ratio: Annotated[float, typer.Argument(parser=number, help="Allocatable = physical x ratio.")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the memory overcommit ratio of every host of a pool (admin)."""
    with Api(url, token) as api:
        r = api.put(api_path("pools", name, "memory-overcommit"), {"ratio": ratio})
    if as_json:
        emit_json(r)
    else:
        say("pool {}: memory overcommit {} ({} hosts changed)", r["pool"], r["ratio"], len(r["changed"]))


def memory_reclaim(
    name: PoolArg,
    threshold: Annotated[
        float, typer.Option(parser=number, help="Reclaim above this fraction of physical memory.")
    ] = 0.9,
    target_ratio: Annotated[float, typer.Option(parser=number, help="Down to threshold x this.")] = 0.8 / 0.9,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One balloon round over a pool's hosts (admin): reclaim under pressure, give back when calm."""
    with Api(url, token) as api:
        got = api.post(
            api_path("pools", name, "memory-reclaim"), {"threshold": threshold, "target_ratio": target_ratio}
        )
    if as_json:
        emit_json(got)
        return
    table(
        f"Balloon round on {name}",
        ("host", "pressure", "reclaimed", "given back", "cannot back", "guests"),
        [
            (
                h["host"],
                f"{h['pressure_before']:.0%} -> {h['pressure_after']:.0%}",
                f"{h['reclaimed_mib']:g} MiB",
                f"{h['returned_mib']:g} MiB",
                f"{h['overflow_mib']:g} MiB",
                str(len(h["changes"])),
            )
            for h in got
        ],
    )


def reserve_memory(
    name: Annotated[str, typer.Argument(help="Workload name.", callback=name_argument)],
    mib: Annotated[float, typer.Argument(parser=number, help="MiB never reclaimed (0 clears).")],
    project: ProjectOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reserve part of a workload's memory: never ballooned away, never overcommitted."""
    with Api(url, token) as api:
        r = api.request(
            "PUT",
            api_path("workloads", name, "memory-reservation"),
            json={"mib": mib},
            params={"project": project},
        )
    if as_json:
        emit_json(r)
    else:
        say("{}/{}: {} MiB of memory reserved", r["project"], r["workload"], r["reserved_mib"])
