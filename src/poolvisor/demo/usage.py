"""Demo workloads with a recorded day of CPU use, so `poolvisor whatif` has a history to replay.

`serve --demo N --demo-vms M` (and `make run`) calls `seed_demo_usage` after `seed_demo`: M VMs of
mixed flavors in project 'demo' (placed as one batch), each with `steps` samples ending now, drawn
from four PlanetLab-like daily shapes (web diurnal, nightly batch, steady, spiky idle) resampled
per VM by traces.synthetic (random phase and scale; seeded, so every demo is the same).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.sim import SimDriver
from poolvisor.traces.synthetic import resample_shapes

if TYPE_CHECKING:
    from poolvisor.services.facade import Services

MAX_DEMO_VMS = 1000  # one batch
MAX_DEMO_STEPS = 2016  # a week of 5-minute samples
DEMO_FLAVORS = ("tiny", "small", "small", "medium", "medium", "large")
DAY = 288  # 5-minute samples in a day, as in PlanetLab


def daily_shapes() -> np.ndarray:
    """(4, 288) CPU % over one day: web (afternoon peak), nightly batch, steady, spiky idle."""
    h = np.arange(DAY) / 12.0  # hour of day
    web = 10 + 45 * np.clip(np.sin(np.pi * (h - 7) / 14), 0, None)
    batch = np.where((h >= 1) & (h < 5), 75.0, 8.0)
    steady = np.full(DAY, 30.0)
    spiky = np.full(DAY, 4.0)
    spiky[::23] = 60.0
    return np.vstack([web, batch, steady, spiky])


def demo_utilization(n: int, steps: int, seed: int = 0) -> np.ndarray:
    """(n, steps) fractions 0..1: the daily shapes resampled per VM, with a little noise."""
    day = resample_shapes(daily_shapes(), n, seed, scale_sigma=0.3) / 100.0
    noise = np.random.default_rng(seed + 1).normal(0.0, 0.03, (n, steps))
    return np.clip(day[:, np.arange(steps) % DAY] + noise, 0.0, 1.0)


def replay_recorded(svc: Services, steps: int = DAY, interval_s: float = 300.0) -> int:
    """Give the demo's sim guests their recorded CPU use (the last `steps` buckets) to replay, as
    `seed_demo_usage` does when it creates them; how many got one."""
    ws = [w for w in svc.workloads.list_workloads("demo") if w.host]
    keys = [f"demo/{w.name}" for w in ws]
    have = svc.utilization.recorded(keys) if keys else []
    ws = [w for w, ok in zip(ws, have, strict=True) if ok]
    if not ws:
        return 0
    hist = svc.utilization.utilization_history([f"demo/{w.name}" for w in ws], interval_s, steps=steps)
    t0 = float(hist.start_s or 0.0)
    n = 0
    for w, row in zip(ws, np.asarray(hist.util).tolist(), strict=True):
        d = svc.drivers.driver_of(w.host) if w.host else None
        if isinstance(d, SimDriver):
            d.set_profile(f"demo/{w.name}", row, interval_s, t0)
            n += 1
    return n


def seed_demo_usage(svc: Services, vms: int, *, steps: int = DAY, interval_s: float = 300.0,
                    seed: int = 0, now: float | None = None) -> int:
    """Create `vms` demo workloads and record their history; a no-op (0) when project 'demo' has
    workloads already. Returns how many workloads were created (those that fit)."""
    if isinstance(vms, bool) or not isinstance(vms, int) or not 0 <= vms <= MAX_DEMO_VMS:
        raise InvalidInputError(f"demo VM count must be 0..{MAX_DEMO_VMS}")
    if not 2 <= steps <= MAX_DEMO_STEPS:
        raise InvalidInputError(f"demo history steps must be 2..{MAX_DEMO_STEPS}")
    if vms == 0 or "demo" not in {p.name for p in svc.catalog.list_projects()}:
        return 0
    if svc.workloads.list_workloads("demo"):
        replay_recorded(svc, steps, interval_s)  # a restart: the sim guests replay their history again
        return 0
    rng = np.random.default_rng(seed)
    specs = [{"name": f"vm-{i:03d}", "flavor": str(rng.choice(DEMO_FLAVORS))} for i in range(vms)]
    made = svc.batch.create_workloads_batch("demo", specs, all_or_nothing=False, pool="demo").workloads
    util = demo_utilization(len(made), steps, seed)
    end = math.floor((time.time() if now is None else now) / interval_s) * interval_s
    times = (end - interval_s * np.arange(steps - 1, -1, -1)).tolist()
    svc.utilization.record_utilization([(f"demo/{w.name}", t, c)
                                        for w, row in zip(made, util.tolist(), strict=True)
                                        for t, c in zip(times, row, strict=True)])
    for w, row in zip(made, util.tolist(), strict=True):  # the sim guests replay the day, in a loop,
        d = svc.drivers.driver_of(w.host) if w.host else None  # so the controller measures it
        if isinstance(d, SimDriver):
            d.set_profile(f"demo/{w.name}", row, interval_s, times[0])
    return len(made)
