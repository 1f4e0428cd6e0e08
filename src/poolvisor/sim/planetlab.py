"""Simulate a PlanetLab day directory under one consolidation policy (CloudSim scenario)."""

from __future__ import annotations

import os
from collections.abc import Callable

from poolvisor.sim.result import SimResult

Progress = Callable[[int, int], None]


def simulate_planetlab(
    trace_dir: str | os.PathLike[str],
    policy: str,
    param: float | None,
    compat: str | None,
    seed: int = 0,
    progress: Progress | None = None,
) -> SimResult:
    """Run the 800-host PlanetLab scenario; ``progress(step, total)`` is called once per epoch."""
    raise NotImplementedError("engine lands in the next commit")
