"""What-if: replay the live pool's recorded utilization under another consolidation policy.

Pure-ish: the inputs are plain arrays (a PoolSnapshot and a UtilizationHistory), the output is the
simulator's SimResult; nothing is written anywhere. `pool_from_services` builds the snapshot from
the Services facade (hosts, workloads and where they run); the store keeps no utilization history
yet, so the history is passed in by the caller (e.g. loaded with `load_history`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.domain.errors import InvalidInputError

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PoolSnapshot:
    """The pool as it is now: hosts with CPU/memory capacity and VMs with demands and placement.

    CPU is in vCPUs (cores) for hosts and VMs alike; memory in MiB. `vm_host[i]` is the index of
    VM i's host in `hosts`, or -1 when it is not placed (the simulator places it at t=0).
    """

    hosts: tuple[str, ...]
    host_cpu: np.ndarray  # (H,) cores
    host_memory_mib: np.ndarray  # (H,)
    vms: tuple[str, ...]
    vm_cpu: np.ndarray  # (V,) cores requested
    vm_memory_mib: np.ndarray  # (V,)
    vm_host: np.ndarray  # (V,) int, -1 = unplaced

    def __post_init__(self) -> None:
        h, v = len(self.hosts), len(self.vms)
        for name, arr, n in (
            ("host_cpu", self.host_cpu, h),
            ("host_memory_mib", self.host_memory_mib, h),
            ("vm_cpu", self.vm_cpu, v),
            ("vm_memory_mib", self.vm_memory_mib, v),
            ("vm_host", self.vm_host, v),
        ):
            a = np.asarray(arr)
            if a.shape != (n,):
                raise InvalidInputError(f"what-if pool: {name} has shape {a.shape}, expected ({n},)")
            if name != "vm_host" and (not np.all(np.isfinite(a)) or np.any(a < 0)):
                raise InvalidInputError(f"what-if pool: {name} must be finite and >= 0")
        if h == 0:
            raise InvalidInputError("what-if pool has no hosts")
        if np.any(np.asarray(self.host_cpu) <= 0):
            raise InvalidInputError("what-if pool: every host needs a CPU capacity > 0")
        vh = np.asarray(self.vm_host)
        if v and (vh.min() < -1 or vh.max() >= h):
            raise InvalidInputError("what-if pool: vm_host holds an index outside the host list")
        if len(set(self.hosts)) != h or len(set(self.vms)) != v:
            raise InvalidInputError("what-if pool: duplicate host or VM names")


@dataclass(frozen=True)
class UtilizationHistory:
    """Recorded CPU use per VM over time: `util[i, t]` = fraction (0..1) of VM i's demand in use."""

    util: np.ndarray  # (V, T)
    interval_s: float = 300.0

    def __post_init__(self) -> None:
        a = np.asarray(self.util)
        if a.ndim != 2 or a.shape[1] == 0:
            raise InvalidInputError(f"utilization history must be (VMs, steps), got shape {a.shape}")
        if not np.all(np.isfinite(a)) or a.min(initial=0) < 0 or a.max(initial=0) > 1:
            raise InvalidInputError("utilization history must hold fractions in 0..1")
        if not self.interval_s > 0:
            raise InvalidInputError("utilization history interval must be > 0 s")


def load_history(path: str | os.PathLike[str], vms: Sequence[str]) -> UtilizationHistory:
    """Read an .npz holding `vms` (names), `util` (V, T) and optionally `interval_s`, in `vms` order."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            names = [str(n) for n in z["vms"]]
            util = np.asarray(z["util"], dtype=np.float64)
            interval = float(z["interval_s"]) if "interval_s" in z else 300.0
    except KeyError as e:
        raise InvalidInputError(f"{p}: missing array {e.args[0]!r} (need 'vms' and 'util')") from None
    except (ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise InvalidInputError(f"{p}: not a utilization history .npz ({e})") from None
    if util.ndim != 2 or util.shape[0] != len(names):
        raise InvalidInputError(f"{p}: util has shape {util.shape} for {len(names)} VM names")
    row = {n: i for i, n in enumerate(names)}
    missing = [n for n in vms if n not in row]
    if missing:
        raise InvalidInputError(f"{p}: no history for {len(missing)} VM(s), e.g. {missing[0]!r}")
    return UtilizationHistory(util[[row[n] for n in vms]], interval)


def pool_from_services(svc: Any, pool: str | None = None) -> PoolSnapshot:
    """Snapshot of a pool (or of every host) through the Services facade.

    Uses only `list_hosts(pool)` and `list_workloads()`: host capacity (`vcpu`, `memory_mib`),
    each running workload's demand and its host. Workloads not on one of these hosts are left out.
    """
    hosts = [h for h in svc.list_hosts(pool) if h.state in ("up", "maintenance")]
    if not hosts:
        raise InvalidInputError(f"pool {pool!r} has no usable host" if pool else "no usable host")
    index = {h.name: i for i, h in enumerate(hosts)}
    wls = [w for w in svc.list_workloads() if w.host in index and w.state == "running"]
    return PoolSnapshot(
        hosts=tuple(h.name for h in hosts),
        host_cpu=np.array([float(h.capacity.get("vcpu", 0.0)) for h in hosts]),
        host_memory_mib=np.array([float(h.capacity.get("memory_mib", 0.0)) for h in hosts]),
        vms=tuple(f"{w.project}/{w.name}" for w in wls),
        vm_cpu=np.array([float(w.demand.get("vcpu", 0.0)) for w in wls]),
        vm_memory_mib=np.array([float(w.demand.get("memory_mib", 0.0)) for w in wls]),
        vm_host=np.array([index[w.host] for w in wls], dtype=np.int64),
    )
