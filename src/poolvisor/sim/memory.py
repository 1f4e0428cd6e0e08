"""Memory overcommit with balloon reclaim, replayed over a utilization trace.

VMs are packed first-fit by memory onto hosts whose allocatable memory is physical x overcommit;
each VM reserves a fraction of its memory. The trace gives each VM's activity per step (PlanetLab
CPU utilization, or a seeded synthetic series): the traces carry no memory use, so the working set
is modelled as `base + (1 - base) x activity` of the VM's memory, and a VM is active at a step
when its activity is at least `active_at`. Per step and host:

* without balloon, a guest keeps every page it ever touched: its memory is the high-water mark
  of its working set (what a hypervisor backs without reclaim);
* with balloon, `policies.memory.balloon.balloon_targets` resizes the balloons from that state:
  under pressure (> high) the least recently active guests give back unused memory down to low,
  never below their reservation or working set; when calm, memory goes back.

Reported: memory the hosts cannot back (sum over host-steps of what exceeds physical memory: it
would swap), host-steps over the high threshold, MiB reclaimed and given back, mean and peak
pressure; the same figures without balloon for comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.memory.balloon import balloon_targets

F64 = npt.NDArray[np.float64]
VM_SIZES_MIB = (1024.0, 2048.0, 4096.0, 8192.0)


@dataclass(frozen=True)
class MemoryRun:
    unbacked_mib_steps: float  # sum over host-steps of memory above physical
    pressure_host_steps: int  # host-steps above the high threshold (after this step's reclaim)
    reclaimed_mib: float
    returned_mib: float
    mean_pressure: float
    peak_pressure: float


@dataclass(frozen=True)
class MemorySimResult:
    vms: int
    hosts: int
    steps: int
    overcommit: float
    reserve: float
    placed: int
    balloon: MemoryRun
    no_balloon: MemoryRun

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_activity(vms: int, steps: int, seed: int = 0) -> F64:
    """(vms, steps) activity in 0..1: a smooth AR(1) series per VM around its own mean."""
    rng = np.random.default_rng(seed)
    mean = rng.beta(2.0, 5.0, vms)
    x = np.empty((vms, steps))
    x[:, 0] = mean
    noise = rng.normal(0.0, 0.08, (vms, steps))
    for t in range(1, steps):
        x[:, t] = mean + 0.9 * (x[:, t - 1] - mean) + noise[:, t]
    return np.asarray(np.clip(x, 0.0, 1.0))


def first_fit(sizes: F64, host_mib: float, overcommit: float, hosts: int) -> npt.NDArray[np.int64]:
    """Host index per VM (-1: did not fit), packing by memory within physical x overcommit."""
    free = np.full(hosts, host_mib * overcommit)
    out = np.full(len(sizes), -1, dtype=np.int64)
    for i, s in enumerate(sizes):
        ok = np.flatnonzero(free >= s)
        if len(ok):
            out[i] = ok[0]
            free[ok[0]] -= s
    return out


def simulate_memory(
    activity: F64,
    *,
    hosts: int = 20,
    host_mib: float = 65536.0,
    overcommit: float = 1.5,
    reserve: float = 0.25,
    base: float = 0.3,
    active_at: float = 0.05,
    high: float = 0.9,
    low: float = 0.8,
    seed: int = 0,
) -> MemorySimResult:
    """Replay `activity` (VMs x steps, 0..1) with and without balloon reclaim (module docstring)."""
    if activity.ndim != 2 or activity.shape[1] < 1:
        raise InvalidInputError("activity must be a (VMs, steps) array")
    if not (
        hosts >= 1
        and host_mib > 0
        and overcommit >= 1
        and 0 <= reserve <= 1
        and 0 <= base <= 1
        and 0 < low <= high <= 1
    ):
        raise InvalidInputError(
            "need hosts >= 1, host_mib > 0, overcommit >= 1, 0 <= reserve, base <= 1, 0 < low <= high <= 1"
        )
    rng = np.random.default_rng(seed)
    vms, steps = activity.shape
    demand = rng.choice(VM_SIZES_MIB, vms)
    host_of = first_fit(demand, host_mib, overcommit, hosts)
    placed = host_of >= 0
    act = np.clip(activity[placed], 0.0, 1.0)
    demand, host_of = demand[placed], host_of[placed]
    reserved = demand * reserve
    ws = demand[:, None] * (base + (1.0 - base) * act)
    members = [np.flatnonzero(host_of == h) for h in range(hosts)]
    granted = ws[:, 0].copy()  # guests start with what they touched at boot
    high_water = ws[:, 0].copy()
    last_active = np.zeros(len(demand))
    b = _Acc()
    nb = _Acc()
    for t in range(steps):
        last_active[act[:, t] >= active_at] = t
        high_water = np.maximum(high_water, ws[:, t])
        for idx in members:
            if not len(idx):
                continue
            nb.add(float(high_water[idx].sum()), host_mib, high, 0.0, 0.0)
            tg = balloon_targets(
                demand[idx], granted[idx], ws[idx, t], reserved[idx], last_active[idx], host_mib, high, low
            )
            granted[idx] = tg.granted
            b.add(float(tg.granted.sum()), host_mib, high, tg.reclaimed, tg.returned)
    return MemorySimResult(
        len(placed), hosts, steps, overcommit, reserve, int(placed.sum()), b.run(), nb.run()
    )


class _Acc:
    def __init__(self) -> None:
        self.unbacked = 0.0
        self.over = 0
        self.reclaimed = 0.0
        self.returned = 0.0
        self.pressures: list[float] = []

    def add(self, used: float, cap: float, high: float, reclaimed: float, returned: float) -> None:
        p = used / cap
        self.pressures.append(p)
        self.unbacked += max(0.0, used - cap)
        self.over += p > high + 1e-9
        self.reclaimed += reclaimed
        self.returned += returned

    def run(self) -> MemoryRun:
        ps = np.array(self.pressures) if self.pressures else np.zeros(1)
        return MemoryRun(
            self.unbacked, self.over, self.reclaimed, self.returned, float(ps.mean()), float(ps.max())
        )
