"""Benchmark: one PlanetLab day with LR-MMT-1.2 in CloudSim-compatible mode vs CloudSim's wall time.

CloudSim's wall time for the same run is the ``cloudsim_wall_s`` column of the reference CSV
shipped with the data (measured with console output discarded; 37.7 s for LR-MMT-1.2 on an idle
machine). Figures are printed, never asserted.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.planetlab import simulate_planetlab

#: CloudSim 3.0.3, LR-MMT-1.2 on one PlanetLab day, idle machine (issue 4).
CLOUDSIM_IDLE_WALL_S = 37.7


def reference_wall_s(reference_csv: Path, day: str, policy: str, param: str) -> float | None:
    """CloudSim's measured wall time for (day, policy, param) from the reference CSV, if listed."""
    if not reference_csv.is_file():
        return None
    with reference_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["day"] == day and row["policy"] == policy and row["param"] == param:
                return float(row["cloudsim_wall_s"])
    return None


def run(
    trace_dir: str | os.PathLike[str], policy: str = "lr-mmt", param: float = 1.2, repeat: int = 3
) -> dict[str, Any]:
    """Best-of-``repeat`` wall time (trace reading included) and CPU time of one compat-mode run."""
    d = Path(trace_dir)
    if not d.is_dir():
        raise InvalidInputError(f"PlanetLab trace directory not found: {d}")
    walls: list[float] = []
    cpus: list[float] = []
    metrics: dict[str, Any] = {}
    for _ in range(max(1, repeat)):
        c0, w0 = time.process_time(), time.perf_counter()
        res = simulate_planetlab(d, policy, param, "cloudsim")
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        metrics = res.metrics
    ref = reference_wall_s(d.parent / "cloudsim-reference.csv", d.name, policy, f"{param:g}")
    best = min(walls)
    return {
        "trace": str(d),
        "policy": f"{policy}-{param:g}",
        "hosts": metrics.get("hosts"),
        "vms": metrics.get("vms"),
        "migrations": metrics.get("migrations"),
        "energy_kwh": metrics.get("energy_kwh"),
        "wall_s": best,
        "cpu_s": min(cpus),
        "runs": len(walls),
        "cloudsim_idle_wall_s": CLOUDSIM_IDLE_WALL_S,
        "speedup_vs_idle": CLOUDSIM_IDLE_WALL_S / best,
        "cloudsim_wall_s": ref,
        "speedup_vs_reference_csv": (ref / best) if ref else None,
    }
