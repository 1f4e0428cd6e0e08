"""`poolvisor simulate memory`: memory overcommit with and without balloon reclaim over a trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from poolvisor.cli.parse import number
from poolvisor.cli.render import emit_json, table


def simulate_memory_cmd(
    planetlab: Annotated[
        Path | None,
        typer.Option(
            help="A PlanetLab day directory (activity = CPU utilization); default: a seeded synthetic trace."
        ),
    ] = None,
    vms: Annotated[int, typer.Option(min=1, max=100_000, help="VMs of the synthetic trace.")] = 400,
    steps: Annotated[int, typer.Option(min=1, max=100_000, help="Steps of the synthetic trace.")] = 288,
    hosts: Annotated[int, typer.Option(min=1, max=10_000, help="Hosts.")] = 20,
    host_mib: Annotated[float, typer.Option(parser=number, help="Physical memory per host (MiB).")] = 65536.0,
    overcommit: Annotated[float, typer.Option(parser=number, help="Memory overcommit ratio.")] = 1.5,
    reserve: Annotated[
        float, typer.Option(parser=number, help="Reserved fraction of each VM's memory.")
    ] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed (VM sizes, synthetic trace).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Pack VMs with memory overcommit, then replay their activity with and without balloon
    reclaim: memory the hosts cannot back, pressure, MiB reclaimed and given back."""
    from poolvisor.sim.memory import simulate_memory, synthetic_activity

    if planetlab is not None:
        from poolvisor.traces.planetlab import read_planetlab

        activity = read_planetlab(planetlab).util / 100.0
    else:
        activity = synthetic_activity(vms, steps, seed)
    r = simulate_memory(
        activity, hosts=hosts, host_mib=host_mib, overcommit=overcommit, reserve=reserve, seed=seed
    )
    if as_json:
        emit_json(r.as_dict())
        return
    rows = [
        ("memory the hosts cannot back (MiB x steps)", "unbacked_mib_steps", "{:,.0f}"),
        ("host-steps above the threshold", "pressure_host_steps", "{:,}"),
        ("reclaimed (MiB)", "reclaimed_mib", "{:,.0f}"),
        ("given back (MiB)", "returned_mib", "{:,.0f}"),
        ("mean pressure", "mean_pressure", "{:.1%}"),
        ("peak pressure", "peak_pressure", "{:.1%}"),
    ]
    b, nb = r.balloon.__dict__, r.no_balloon.__dict__
    table(
        f"{r.placed}/{r.vms} VMs on {r.hosts} hosts, {r.steps} steps, overcommit {r.overcommit:g}, "
        f"reserve {r.reserve:.0%}",
        ("metric", "balloon", "no balloon"),
        [(label, fmt.format(b[k]), fmt.format(nb[k])) for label, k, fmt in rows],
    )
