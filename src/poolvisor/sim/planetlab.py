"""Simulate a PlanetLab day directory under one consolidation policy (CloudSim scenario)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.limits import Limits
from poolvisor.sim.engine import PolicySpec, Sharing, Simulator
from poolvisor.sim.result import SimResult
from poolvisor.sim.scenario import cloudsim_planetlab
from poolvisor.traces.planetlab import read_planetlab

Progress = Callable[[int, int], None]
COMPAT_MODES = ("cloudsim",)


def simulate_planetlab(
    trace_dir: str | os.PathLike[str],
    policy: str,
    param: float | None,
    compat: str | None,
    seed: int = 0,
    progress: Progress | None = None,
    hosts: int = 800,
    record: bool = False,
    check_ram: bool = False,
    underload_limit: int | None = None,
    limits: Limits | None = None,
    reserve: float | None = None,
) -> SimResult:
    """Run the 800-host PlanetLab scenario; ``progress(step, total)`` is called once per epoch.

    ``compat="cloudsim"`` reproduces CloudSim 3.0.3 rule for rule; ``None`` uses the corrected
    definitions (docs/simulator.md lists the differences). ``record=True`` keeps the step-level
    record in ``result.debug``: ``initial_hosts``, ``migrations`` as (t, vm, src, dst) and
    ``energy_frames`` as (t, Ws). ``check_ram=True`` (default mode only) also refuses placements
    whose RAM does not fit, which CloudSim never checks after t=0. ``underload_limit`` (default
    mode only) tries at most that many underloaded hosts per step. ``limits`` (default mode only):
    the live controller's balancing limits on every epoch's migrations (the same ``admit``).
    ``reserve`` (default mode only): an overloaded host is shared by the policy core
    (policies/shares.py) instead of CloudSim's proportional scaling, each VM reserving that
    fraction of its MIPS, shares by its size.
    """
    if compat not in (None, *COMPAT_MODES):
        raise InvalidInputError(f"unknown compat mode {compat!r} (use {', '.join(COMPAT_MODES)})")
    spec = PolicySpec.parse(policy, param)
    trace = read_planetlab(trace_dir)
    sc = cloudsim_planetlab(trace.util, hosts=hosts, name=Path(trace_dir).name)
    sharing = Sharing.by_size(sc.vm_mips, reserve) if reserve is not None else None
    sim = Simulator(
        sc, spec, compat=compat == "cloudsim", seed=seed, record=record, check_ram=check_ram,
        underload_limit=underload_limit, limits=limits, sharing=sharing,
    )  # fmt: skip
    res = sim.run(progress)
    if record:
        res.debug.update(
            initial_hosts=sim.initial_hosts, migrations=sim.trace_migrations, energy_frames=sim.trace_frames
        )
    return res
