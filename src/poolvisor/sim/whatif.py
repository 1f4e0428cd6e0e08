"""What-if: replay the live pool's recorded utilization under another consolidation policy.

Pure-ish: the inputs are plain arrays (a PoolSnapshot and a UtilizationHistory), the output is the
simulator's SimResult; nothing is written anywhere. `pool_from_services` builds the snapshot from
the public services (hosts, workloads and where they run); the history comes from the store's
recorded samples (`svc.utilization.utilization_history(pool.vms, ...)`, services/utilization.py)
or from an .npz file (`load_history`). It lives with the simulator it drives, outside services/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.power import PowerTable
from poolvisor.services.utilization import UtilizationHistory
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.result import SimResult
from poolvisor.sim.scenario import Scenario

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


#: what a workload without recorded utilization replays at: its whole vCPU reservation, all the time
NO_HISTORY_UTIL = 1.0
NO_HISTORY_RULE = "a constant 100% of the VM's vCPU reservation"


def fill_without_history(vms: Sequence[str], known: Sequence[str], hist: UtilizationHistory
                         ) -> UtilizationHistory:
    """The history of `vms` from `hist`, whose rows are `known` (a subset, in `hist` order); the
    other VMs replay at NO_HISTORY_UTIL.

    Why the reservation rather than leaving them out: a VM without history (typically one just
    created) still holds its memory and vCPUs on its host. Left out, its host would look emptier
    than it is and a policy could consolidate into room that is taken. At its reservation it
    occupies what placement already counts; its CPU is if anything overestimated, by the same
    amount under every policy compared, so the comparison stays fair."""
    row = {v: i for i, v in enumerate(vms)}
    util = np.full((len(vms), hist.util.shape[1]), NO_HISTORY_UTIL)
    if known:
        util[[row[v] for v in known]] = hist.util
    return UtilizationHistory(util, hist.interval_s, hist.start_s)


def history_for(vms: Sequence[str], recorded: Sequence[bool],
                read: Callable[[list[str]], UtilizationHistory]) -> tuple[UtilizationHistory, list[str]]:
    """`read(known)` for the VMs that have a history; the others at their reservation.
    Returns the history of all `vms` and the names of those without one."""
    known = [v for v, ok in zip(vms, recorded, strict=True) if ok]
    missing = [v for v, ok in zip(vms, recorded, strict=True) if not ok]
    if not known:
        raise InvalidInputError(
            f"no utilization recorded for any of the {len(vms)} VM(s) (e.g. {vms[0]}): nothing to replay")
    return fill_without_history(vms, known, read(known)), missing


def history_from_store(svc: Any, vms: Sequence[str], interval_s: float = 300.0, *, steps: int | None = None,
                       since: Any = None) -> tuple[UtilizationHistory, list[str]]:
    """The store's recorded history of `vms` (Services.utilization_history); VMs with no sample
    replay at their reservation. Returns the history and the VMs without one."""
    return history_for(vms, svc.utilization.recorded(vms),
                       lambda known: svc.utilization.utilization_history(known, interval_s, steps=steps,
                                                                         since=since))


def history_from_file(path: str | os.PathLike[str], vms: Sequence[str]
                      ) -> tuple[UtilizationHistory, list[str]]:
    """`load_history`, with VMs missing from the file replayed at their reservation."""
    names = set(_npz_names(Path(path)))
    return history_for(vms, [v in names for v in vms], lambda known: load_history(path, known))


def _npz_names(p: Path) -> list[str]:
    try:
        with np.load(p, allow_pickle=False) as z:
            return [str(n) for n in z["vms"]]
    except KeyError:
        raise InvalidInputError(f"{p}: missing array 'vms' (need 'vms' and 'util')") from None
    except (ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise InvalidInputError(f"{p}: not a utilization history .npz ({e})") from None


def pool_from_services(svc: Any, pool: str | None = None) -> PoolSnapshot:
    """Snapshot of a pool (or of every host) through the public services (hosts, workloads).

    Uses only `list_hosts(pool)` and `list_workloads()`: host capacity (`vcpu`, `memory_mib`),
    each running workload's demand and its host. Workloads not on one of these hosts are left out.
    """
    hosts = [h for h in svc.hosts.list_hosts(pool) if h.state in ("up", "maintenance", "draining")]
    if not hosts:
        raise InvalidInputError(f"pool {pool!r} has no usable host" if pool else "no usable host")
    index = {h.name: i for i, h in enumerate(hosts)}
    wls = [w for w in svc.workloads.list_workloads() if w.host in index and w.state == "running"]
    return PoolSnapshot(
        hosts=tuple(h.name for h in hosts),
        host_cpu=np.array([float(h.capacity.get("vcpu", 0.0)) for h in hosts]),
        host_memory_mib=np.array([float(h.capacity.get("memory_mib", 0.0)) for h in hosts]),
        vms=tuple(f"{w.project}/{w.name}" for w in wls),
        vm_cpu=np.array([float(w.demand.get("vcpu", 0.0)) for w in wls]),
        vm_memory_mib=np.array([float(w.demand.get("memory_mib", 0.0)) for w in wls]),
        vm_host=np.array([index[w.host] for w in wls], dtype=np.int64),
    )



#: MIPS per vCPU: the simulator counts CPU in MIPS; any constant works as long as hosts and VMs share it
MIPS_PER_CORE = 1000.0
#: default host power when the pool declares none: linear from idle to full load (typical 2-socket server)
DEFAULT_IDLE_W = 100.0
DEFAULT_MAX_W = 250.0


def whatif_scenario(
    pool: PoolSnapshot,
    history: UtilizationHistory,
    power: tuple[float, ...] | None = None,
    link_gbit: float = 10.0,
    name: str = "live-pool",
) -> Scenario:
    """The simulator Scenario for this pool and history.

    Each host is one CPU of `vcpu x MIPS_PER_CORE` (so a multi-vCPU VM is not capped at one
    core, as CloudSim's 1-PE model would do), memory is in MiB, migrations use half of a
    `link_gbit` link, and the history's steps become the scheduling epochs (t = 0 is now).
    """
    util = np.asarray(history.util, dtype=np.float64)
    if util.shape[0] != len(pool.vms):
        raise InvalidInputError(f"history has {util.shape[0]} VMs, the pool {len(pool.vms)}")
    if util.shape[1] < 2:
        raise InvalidInputError("utilization history needs at least 2 steps")
    if not link_gbit > 0:
        raise InvalidInputError("link_gbit must be > 0")
    h, v = len(pool.hosts), len(pool.vms)
    table = PowerTable.of(power if power is not None else PowerTable.linear(DEFAULT_IDLE_W, DEFAULT_MAX_W))
    padded = np.empty((v, util.shape[1] + 1))  # the engine reads one value past the last step
    padded[:, :-1] = util
    padded[:, -1] = util[:, -1]
    return Scenario(
        host_pes=np.ones(h),
        host_pe_mips=np.asarray(pool.host_cpu, dtype=np.float64) * MIPS_PER_CORE,
        host_ram=np.asarray(pool.host_memory_mib, dtype=np.float64),
        host_bw=np.full(h, link_gbit * 1e6),  # CloudSim units: 1e6 = 1 Gbit/s
        host_model=np.zeros(h, dtype=np.intp),
        power=table,
        vm_mips=np.asarray(pool.vm_cpu, dtype=np.float64) * MIPS_PER_CORE,
        vm_ram=np.asarray(pool.vm_memory_mib, dtype=np.float64),
        vm_bw=np.ones(v),  # bandwidth does not limit VMs per host in a live pool
        util=padded,
        interval_s=float(history.interval_s),
        start_s=0.0,
        end_s=float(history.interval_s) * (util.shape[1] - 1),
        name=name,
    )


class _FromCurrentPlacement(Simulator):
    """The engine, starting from the pool's actual placement instead of making its own at t=0."""

    def __init__(self, sc: Scenario, spec: PolicySpec, *, seed: int, hosts_of: np.ndarray) -> None:
        super().__init__(sc, spec, compat=False, seed=seed)
        self._start_hosts = hosts_of

    def initial_placement(self) -> None:
        self._append(np.arange(self.V), self._start_hosts)  # VM order = list order on each host


def simulate_whatif(
    pool: PoolSnapshot,
    history: UtilizationHistory,
    policy: str,
    param: float | None = None,
    *,
    seed: int = 0,
    keep_placement: bool = True,
    power: tuple[float, ...] | None = None,
    link_gbit: float = 10.0,
    progress: Progress | None = None,
) -> SimResult:
    """Replay `history` on `pool` under `policy` ('lr-mmt', 'thr-mmt' with `param`, 'dvfs', ...).

    With `keep_placement` the run starts from the VMs' current hosts (what would the policy do
    from here); without it the policy also makes the initial placement (a freshly filled pool).
    Default simulator mode (the paper's definitions, not CloudSim's quirks).
    """
    spec = PolicySpec.parse(policy, param)
    sc = whatif_scenario(pool, history, power, link_gbit)
    sim: Simulator
    if keep_placement:
        vh = np.asarray(pool.vm_host, dtype=np.int64)
        if vh.size and vh.min() < 0:
            raise InvalidInputError(
                f"{int((vh < 0).sum())} VM(s) have no host; use keep_placement=False to place them"
            )
        sim = _FromCurrentPlacement(sc, spec, seed=seed, hosts_of=vh)
    else:
        sim = Simulator(sc, spec, compat=False, seed=seed)
    return sim.run(progress)
