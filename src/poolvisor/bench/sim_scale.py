"""Scale run of the simulator: N synthetic VMs (resampled PlanetLab shapes) on H hosts for one day.

CloudSim's PlanetLab hosts (2 PEs, 4 GB, 1 Gbit/s) hold ~1.3 VMs each; at 10 VMs per host they
cannot even hold the VMs' RAM, so the scale scenario keeps the HP ProLiant power curves and
alternating G4/G5 PE speeds but gives every host 16 PEs, 32 GiB and a 10 Gbit/s link. VM types
are CloudSim's four, in contiguous blocks. Figures are printed, never asserted.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.scenario import Scenario, cloudsim_planetlab
from poolvisor.traces.synthetic import load_shapes, resample_shapes

SCALE_HOST_PES = 16
SCALE_HOST_RAM_MB = 32768.0
SCALE_HOST_BW = 10_000_000.0  # CloudSim units: 10x the PlanetLab hosts' 1 Gbit/s


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def scale_scenario(util_pct: np.ndarray, hosts: int, name: str = "synthetic") -> Scenario:
    """CloudSim PlanetLab scenario widened to `hosts` big hosts (see module docstring)."""
    sc = cloudsim_planetlab(util_pct, hosts=hosts, name=name)
    return dataclasses.replace(
        sc,
        host_pes=np.full(hosts, float(SCALE_HOST_PES)),
        host_ram=np.full(hosts, SCALE_HOST_RAM_MB),
        host_bw=np.full(hosts, SCALE_HOST_BW),
    )


def run_scale(
    days: Sequence[str | Path],
    vms: int = 100_000,
    hosts: int = 10_000,
    policy: str = "thr-mmt",
    param: float | None = None,
    seed: int = 0,
    compat: bool = False,
    underload_limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate, build and simulate; returns the figures (wall times in s, peak RSS in MiB)."""
    if vms <= 0 or hosts <= 0:
        raise InvalidInputError("--vms and --hosts must be positive")
    t0 = time.perf_counter()
    shapes = load_shapes(list(days))
    util = resample_shapes(shapes, vms, seed=seed)
    t1 = time.perf_counter()
    sc = scale_scenario(util, hosts)
    del util
    t2, c2 = time.perf_counter(), time.process_time()
    spec = PolicySpec.parse(policy, param)
    sim = Simulator(sc, spec, compat=compat, seed=seed, underload_limit=underload_limit)
    res = sim.run(progress)
    t3, c3 = time.perf_counter(), time.process_time()
    m = res.metrics
    return {
        "vms": vms,
        "hosts": hosts,
        "policy": res.label,
        "mode": "cloudsim" if compat else "default",
        "underload_limit": underload_limit,
        "source_vms": int(shapes.shape[0]),
        "generate_s": round(t1 - t0, 3),
        "build_s": round(t2 - t1, 3),
        "simulate_s": round(t3 - t2, 3),
        "simulate_cpu_s": round(c3 - c2, 3),  # CPU time: the fair figure on a shared machine
        "total_s": round(t3 - t0, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "energy_kwh": float(m["energy_kwh"]),
        "migrations": int(m["migrations"]),
        "slav": float(m["slav"]),
        "max_active_hosts": int(res.active_hosts.max()) if res.active_hosts.size else 0,
        "final_active_hosts": int(res.active_hosts[-1]) if res.active_hosts.size else 0,
    }
