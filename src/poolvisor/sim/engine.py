"""Time-stepped consolidation simulator with an event queue for migration completions.

State is columnar: per-VM arrays (host, list key, migration flag, utilization history) and the
in-flight migrations as arrays sorted by completion (time, start sequence), the order of CloudSim's
event queue; the completions of one instant are applied in one vectorized step. At every update
instant (decision epochs and migration completions) the CPU allocation of all hosts is recomputed
in one pass (:func:`allocate`), energy is integrated over the elapsed frame, and the SLA integrals are
advanced. Decisions come from the pure policies in :mod:`poolvisor.policies.balancing`.

Which CloudSim 3.0.3 behaviours it reproduces is the simulator's compat configuration
(:mod:`poolvisor.sim.compat`): ``--compat cloudsim`` turns them all on (docs/simulator.md); the
default mode uses the paper's definitions. The engine applies the flags that are its own and
translates the others into the policy's knobs.
"""

from __future__ import annotations

import gc
import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from poolvisor.clock import SimClock
from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.models import HostSpec
from poolvisor.jit import CompileOnce
from poolvisor.policies import shares as share_policy
from poolvisor.policies.balancing.actions import Action
from poolvisor.policies.balancing.adaptive import ADAPTIVE, AdaptiveConfig
from poolvisor.policies.balancing.consolidation import PlanConfig
from poolvisor.policies.balancing.limits import Limits, admit
from poolvisor.policies.balancing.planner import (
    DEFAULT_PARAMS,
    FALLBACK_THRESHOLD,
    AdaptivePolicy,
    PabfdPolicy,
    plan_balancing,
    plan_initial,
)
from poolvisor.policies.balancing.power import clip_utilization
from poolvisor.policies.balancing.selection import SELECTORS, Selector
from poolvisor.policies.balancing.view import BalancingView, Share
from poolvisor.sim.compat import CLOUDSIM, PAPER, Compat
from poolvisor.sim.result import SimResult
from poolvisor.sim.scenario import Scenario
from poolvisor.state.cluster import ClusterState

HISTORY = 30  # CloudSim PowerVm.HISTORY_LENGTH
#: the PlanetLab model's resources: CPU in MIPS, RAM in MB, link bandwidth (CloudSim units)
CPU, RAM, BW = "mips", "ram_mb", "bw"

Progress = Callable[[int, int], None]

#: same-instant order on the clock: an end that closes the day before a next epoch's events, the
#: epoch's tick, the migration completions at that instant (CloudSim's order), an end after them
END_BEFORE, TICK, COMPLETE, END_AFTER = range(-1, 3)


@dataclass(frozen=True)
class PolicySpec:
    """``npa`` | ``dvfs`` | ``adaptive`` | ``<detector>-<selector>`` (e.g. ``lr-mmt``) with its
    parameter (adaptive: the safety of its LR acceptance check, as lr-mmt's)."""

    name: str
    param: float | None
    detector: str | None = None
    selector: str | None = None

    @classmethod
    def parse(cls, policy: str, param: float | None) -> PolicySpec:
        p = policy.strip().lower()
        if p in ("npa", "dvfs"):
            return cls(p, None)
        parts = p.split("-")
        if parts[0] == ADAPTIVE:  # "adaptive" or "adaptive-1.2": LR forecast, MMT selection
            if len(parts) > 2:
                raise InvalidInputError(f"unknown policy {policy!r}: adaptive takes one parameter")
            parts = [ADAPTIVE, "lr", *parts[1:]]
        if len(parts) == 3:  # e.g. "thr-mmt-0.8"
            try:
                param = float(parts[2]) if param is None else param
            except ValueError:
                raise InvalidInputError(f"bad policy parameter in {policy!r}") from None
            parts = parts[:2]
        if parts[0] == ADAPTIVE:
            safety = float(DEFAULT_PARAMS["lr"] if param is None else param)
            if not safety >= AdaptiveConfig().trigger_safety:
                raise InvalidInputError(f"adaptive: the safety parameter must be >= 1 (not {safety:g})")
            return cls(ADAPTIVE, safety, "lr", "mmt")
        if len(parts) != 2 or parts[0] not in DEFAULT_PARAMS or parts[1] not in SELECTORS:
            raise InvalidInputError(
                f"unknown policy {policy!r}: use adaptive, npa, dvfs or "
                "<thr|iqr|mad|lr|lrr>-<mmt|mu|mc|rs|lp>"
            )
        if param is None:
            param = DEFAULT_PARAMS[parts[0]]
        return cls(f"{parts[0]}-{parts[1]}", float(param), parts[0], parts[1])


def utilization_at(util: np.ndarray, t: float, interval: float) -> np.ndarray:
    """CloudSim UtilizationModelPlanetLabInMemory.getUtilization(t), vectorized over VMs."""
    if t % interval == 0:
        return util[:, int(t) // int(interval)]
    t1 = math.floor(t / interval)
    t2 = math.ceil(t / interval)
    u1 = util[:, t1]
    u2 = util[:, t2]
    delta = (u2 - u1) / ((t2 - t1) * interval)
    return u1 + delta * (t - t1 * interval)


@dataclass
class Allocation:
    """Result of one allocation pass: per host and per VM (resident copy)."""

    util_mips: np.ndarray
    req_mips: np.ndarray
    alloc_sum: np.ndarray
    avail: np.ndarray
    vm_alloc: np.ndarray
    vm_req: np.ndarray
    vm_in_mig: np.ndarray
    order: np.ndarray  # resident VMs sorted by (list key)


def key_order(keys: np.ndarray) -> np.ndarray:
    """Indices that sort ``keys`` (unique, >= 0) ascending: the same permutation as any argsort.

    Sorting the keys packed with their positions (one int64 each) is a plain value sort, several
    times cheaper than an argsort; keys too large to pack fall back to argsort.
    """
    n = keys.size
    if n < 2:
        return np.arange(n)
    keys = keys.astype(np.int64, copy=False)
    b = (n - 1).bit_length()
    if int(keys.min()) < 0 or int(keys.max()) >= 1 << (62 - b):
        return np.argsort(keys)
    packed = (keys << b) | np.arange(n)
    packed.sort()
    return packed & ((1 << b) - 1)


def _pack(
    host_of: np.ndarray,
    key: np.ndarray,
    req: np.ndarray,
    f_key: np.ndarray,
    b: int,
    packed: np.ndarray,
    vm_req: np.ndarray,
) -> int:
    """Compiled: the list entries as ``key << b | id`` (id: the VM for a resident copy, V + i for
    flight i) into ``packed``, and each VM's request if placed; -1 when a key is too wide."""
    V = host_of.shape[0]
    limit = np.int64(1) << (62 - b)
    m = 0
    for v in range(V):
        if host_of[v] >= 0:
            k = key[v]
            if k < 0 or k >= limit:
                return -1
            packed[m] = (k << b) | v
            m += 1
            vm_req[v] = req[v]
        else:
            vm_req[v] = 0.0
    for f in range(f_key.shape[0]):
        k = f_key[f]
        if k < 0 or k >= limit:
            return -1
        packed[m] = (k << b) | (V + f)
        m += 1
    return m


def _share(
    packed: np.ndarray,
    b: int,
    f_vm: np.ndarray,
    f_dst: np.ndarray,
    req: np.ndarray,
    host_of: np.ndarray,
    in_mig: np.ndarray,
    pe: np.ndarray,
    total: np.ndarray,
    util_mips: np.ndarray,
    req_mips: np.ndarray,
    alloc_sum: np.ndarray,
    avail: np.ndarray,
    vm_alloc: np.ndarray,
    order: np.ndarray,
    s_h: np.ndarray,
    s_v: np.ndarray,
    cap: np.ndarray,
) -> int:
    """Compiled body of :func:`allocate` over the entries sorted by key (``packed``, see
    :func:`_pack`): the same IEEE operations, each host sum added in list order like np.bincount.
    s_h, s_v, cap: scratch of the entries' size; a flight's VM is stored as -1 - vm."""
    H = total.shape[0]
    n = packed.shape[0]
    V = host_of.shape[0]
    mask = (np.int64(1) << b) - 1
    need_sum = np.zeros(H)
    for j in range(n):
        i = packed[j] & mask
        if i < V:
            h = host_of[i]
            r = req[i]
            c = min(r, pe[h])
            need_sum[h] += c
            s_v[j] = i
        else:
            v = f_vm[i - V]
            h = f_dst[i - V]
            r = req[v]
            c = min(r, pe[h])
            need_sum[h] += c * 0.1
            s_v[j] = -1 - v
        req_mips[h] += r
        s_h[j] = h
        cap[j] = c
    m = 0
    for j in range(n):
        h = s_h[j]
        c = cap[j]
        v = s_v[j]
        k = 2 if v < 0 else (1 if in_mig[v] else 0)  # resident, migrating out, migrating in
        if need_sum[h] <= total[h]:
            a = c * 0.9 if k == 1 else (c * 0.1 if k == 2 else c)
        else:
            sf = total[h] / need_sum[h]
            if k == 1:
                a = np.floor(c * sf * 0.9)
            elif k == 2:
                a = np.floor(c * 0.1 * sf)
            else:
                a = np.floor(c * sf)
        util_mips[h] += a / 0.9 if k == 1 else a
        alloc_sum[h] += a
        if k != 2:
            vm_alloc[v] = a
            order[m] = v
            m += 1
    for h in range(H):
        avail[h] = total[h] - need_sum[h] if need_sum[h] <= total[h] else 0.0
    return m


_pack_jit: Callable[..., int] | None = None
_share_jit: Callable[..., int] | None = None


def _compile_share() -> None:
    global _pack_jit, _share_jit
    from numba import njit

    pack: Callable[..., int] = njit(cache=True, nogil=True)(_pack)
    share: Callable[..., int] = njit(cache=True, nogil=True)(_share)
    i, none, one = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.ones(1)
    pack(i, i, one, none, 1, np.zeros(1, dtype=np.int64), np.zeros(1))
    out = [np.zeros(1) for _ in range(5)]
    work = [i.copy(), i.copy(), i.copy(), one.copy()]
    share(i, 1, none, none, one, i, np.zeros(1, dtype=bool), one, one, *out, *work)
    _pack_jit, _share_jit = pack, share


_share_compiler = CompileOnce(_compile_share)


class Workspace:
    """Scratch buffers of the compiled allocation, kept between passes: fresh ones of this size
    come from the OS as untouched pages, and faulting them in costs about as much as the pass."""

    def __init__(self) -> None:
        self.size = -1
        self.i64 = np.zeros((3, 0), dtype=np.int64)
        self.f64 = np.zeros(0)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """packed, s_h, s_v (int64) and cap (float64), each with room for n entries."""
        if n > self.size:
            self.size = max(n, self.size + self.size // 4)
            self.i64 = np.zeros((3, self.size), dtype=np.int64)
            self.f64 = np.zeros(self.size)
        return self.i64[0], self.i64[1], self.i64[2], self.f64


@dataclass(frozen=True)
class Sharing:
    """The shares mode of an overloaded host (instead of CloudSim's proportional scaling): per VM
    a reservation and shares in the policy core's sense (policies/shares.py); its limit is its
    request capped at one PE. A copy migrating in reserves nothing."""

    reservation: np.ndarray  # (V,) MIPS
    shares: np.ndarray  # (V,)

    @classmethod
    def by_size(cls, vm_mips: np.ndarray, reserve: float) -> Sharing:
        """Reservation `reserve` x the VM's MIPS, shares its MIPS (a bigger VM weighs more, as
        shares proportional to configured vCPUs do)."""
        if not 0.0 <= reserve <= 1.0:
            raise InvalidInputError("the reserved fraction must be in [0, 1]")
        mips = np.asarray(vm_mips, dtype=np.float64)
        return cls(reserve * mips, mips.copy())


def allocate(
    req: np.ndarray,
    host_of: np.ndarray,
    key: np.ndarray,
    in_mig: np.ndarray,
    f_vm: np.ndarray,
    f_dst: np.ndarray,
    f_key: np.ndarray,
    pe: np.ndarray,
    total: np.ndarray,
    work: Workspace | None = None,
    sharing: Sharing | None = None,
) -> Allocation:
    """CPU sharing of VmSchedulerTimeSharedOverSubscription on every host at once.

    Requests are capped at one PE; if a host's (capped) requests fit, each VM gets its request,
    otherwise all are scaled by capacity/requested and floored. A VM migrating out gets 90 %
    (10 % degradation) and its host still counts its full demand; a VM migrating in gets 10 %
    on its target and counts that much there. Sums run in host-list order, like CloudSim's.
    Two compiled passes when numba is available (:func:`_pack`, :func:`_share`), else numpy;
    same results. ``work``: scratch reused between calls (one per thread). ``sharing``: an
    overloaded host is shared by the policy core instead (reservations, then shares; numpy).
    """
    if sharing is None and _share_compiler.ready() and _pack_jit is not None and _share_jit is not None:
        i64, f64 = np.int64, np.float64
        host_of = host_of.astype(i64, copy=False)
        req = req.astype(f64, copy=False)
        f_vm, f_dst = f_vm.astype(i64, copy=False), f_dst.astype(i64, copy=False)
        V = req.size
        b = max(V + f_key.size - 1, 1).bit_length()
        packed, s_h, s_v, cap = (work or Workspace()).get(V + f_key.size)
        vm_req = np.empty(V)
        n = _pack_jit(
            host_of, key.astype(i64, copy=False), req, f_key.astype(i64, copy=False), b, packed, vm_req
        )
        if n >= 0:
            packed = packed[:n]
            packed.sort()  # unique keys: the list order
            H = total.size
            util_mips, req_mips, alloc_sum, avail = np.zeros(H), np.zeros(H), np.zeros(H), np.zeros(H)
            vm_alloc = np.zeros(V)
            order = np.empty(n, dtype=np.int64)
            m = _share_jit(
                packed, b, f_vm, f_dst, req, host_of, in_mig.astype(bool, copy=False),
                pe.astype(f64, copy=False), total.astype(f64, copy=False),
                util_mips, req_mips, alloc_sum, avail, vm_alloc, order, s_h, s_v, cap,
            )  # fmt: skip
            return Allocation(
                util_mips, req_mips, alloc_sum, avail, vm_alloc, vm_req, in_mig.copy(), order[:m]
            )
    alive = np.flatnonzero(host_of >= 0)
    idx = key_order(np.concatenate([key[alive], f_key]))  # list keys are unique (one counter)
    vm_req = np.where(host_of >= 0, req, 0.0)
    return _allocate_numpy(req, host_of, in_mig, alive, f_vm, f_dst, idx, pe, total, vm_req, sharing)


def _allocate_numpy(
    req: np.ndarray,
    host_of: np.ndarray,
    in_mig: np.ndarray,
    alive: np.ndarray,
    f_vm: np.ndarray,
    f_dst: np.ndarray,
    idx: np.ndarray,
    pe: np.ndarray,
    total: np.ndarray,
    vm_req: np.ndarray,
    sharing: Sharing | None = None,
) -> Allocation:
    """:func:`allocate` without numba: the entries (alive VMs, then flights) in list order ``idx``."""
    H = total.size
    s_host = np.concatenate([host_of[alive], f_dst])[idx]
    s_vm = np.concatenate([alive, f_vm])[idx]
    kind = np.concatenate([in_mig[alive].astype(np.int8), np.full(f_vm.size, 2, dtype=np.int8)])[idx]
    r = req[s_vm]
    cap = np.minimum(r, pe[s_host])
    is_in = kind == 2
    is_out = kind == 1
    need = np.where(is_in, cap * 0.1, cap)
    need_sum = np.bincount(s_host, need, H)
    fits = need_sum <= total
    with np.errstate(divide="ignore", invalid="ignore"):
        sf = (total / need_sum)[s_host]
    fit_alloc = np.where(is_out, cap * 0.9, np.where(is_in, cap * 0.1, cap))
    if fits.all():
        alloc = fit_alloc
    elif sharing is not None:  # the policy core: reservations first, then shares, up to the need
        got = share_policy.grant(need[:, None], np.where(is_in, 0.0, sharing.reservation[s_vm])[:, None],
                                 need[:, None], sharing.shares[s_vm][:, None], total[:, None], s_host)[:, 0]
        alloc = np.where(fits[s_host], fit_alloc, np.where(is_out, got * 0.9, got))
    else:
        with np.errstate(invalid="ignore"):
            scaled = np.floor(np.where(is_out, cap * sf * 0.9, np.where(is_in, cap * 0.1 * sf, cap * sf)))
        alloc = np.where(fits[s_host], fit_alloc, scaled)
    contrib = np.where(is_out, alloc / 0.9, alloc)
    res = ~is_in
    vm_alloc = np.zeros(req.size)
    vm_alloc[s_vm[res]] = alloc[res]
    return Allocation(
        util_mips=np.bincount(s_host, contrib, H),
        req_mips=np.bincount(s_host, r, H),
        alloc_sum=np.bincount(s_host, alloc, H),
        avail=np.where(fits, total - need_sum, 0.0),
        vm_alloc=vm_alloc,
        vm_req=vm_req,
        vm_in_mig=in_mig.copy(),
        order=s_vm[res],
    )


def _build_state(sc: Scenario) -> ClusterState:
    """The scenario as the one model: hosts (MIPS = PEs x MIPS per PE, RAM, link bandwidth) and
    one unplaced workload row per VM (its MIPS, RAM and bandwidth), with a HISTORY-sample window."""
    st = ClusterState((CPU, RAM, BW), capacity_hint=max(sc.hosts, 1), window=HISTORY,
                      workload_hint=max(sc.vms, 1))
    total = sc.host_total
    for h in range(sc.hosts):
        cap = {CPU: float(total[h]), RAM: float(sc.host_ram[h]), BW: float(sc.host_bw[h])}
        st.add_host(HostSpec(f"h{h}", cap))
    st.workloads.add_many(range(sc.vms), np.full(sc.vms, -1), np.stack([sc.vm_mips, sc.vm_ram, sc.vm_bw]))
    return st


@dataclass
class _Acc:
    """Running integrals for the metrics."""

    energy_ws: float = 0.0
    host_active_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    host_viol_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vm_req: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vm_alloc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    vm_mig_under: np.ndarray = field(default_factory=lambda: np.zeros(0))
    viol_sum: float = 0.0
    viol_n: int = 0
    shutdowns: int = 0


class Simulator:
    """One run of one policy over one scenario.

    ``compat``: the CloudSim behaviours to reproduce (:class:`Compat`; True is all of them, as
    ``--compat cloudsim``, False none).
    """

    def __init__(
        self,
        sc: Scenario,
        spec: PolicySpec,
        compat: bool | Compat = True,
        seed: int = 0,
        record: bool = False,
        check_ram: bool = False,
        underload_limit: int | None = None,
        limits: Limits | None = None,
        sharing: Sharing | None = None,
    ) -> None:
        quirks = compat if isinstance(compat, Compat) else (CLOUDSIM if compat else PAPER)
        if sharing is not None and quirks != PAPER:
            raise InvalidInputError("the shares mode needs the default mode (CloudSim scales proportionally)")
        self.sharing = sharing
        if underload_limit is not None and (quirks != PAPER or underload_limit < 0):
            raise InvalidInputError("the underload limit needs the default mode and a count >= 0")
        if limits is not None and quirks != PAPER:
            raise InvalidInputError("balancing limits need the default mode (CloudSim has none)")
        # the live controller's balancing limits (policies/balancing/limits.py admit), when given:
        # each epoch's planned migrations pass the same function before they start
        self.limits = limits
        self.last_move = np.full(sc.vms, -np.inf)  # when each VM last started a migration
        self.left_host = np.full(sc.vms, -1, dtype=np.int64)  # the host it left then
        self.mig_src = np.full(sc.vms, -1, dtype=np.int64)  # source of its migration in flight
        self.held: dict[str, int] = {}  # planned migrations the limits held back, by reason
        self.sc = sc
        self.spec = spec
        self.quirks = quirks
        # RAM is optional in the default mode because 4 GB hosts then hold only 2-4 VMs and
        # consolidation all but stops
        self.check_ram = check_ram and not quirks.ram_ignored
        self.seed = seed
        self.record = record
        self.total = sc.host_total
        self.pe = sc.host_pe_mips
        self.H, self.V = sc.hosts, sc.vms
        # history type of a host = index of its distinct total MIPS
        self.type_mips, self.htype = np.unique(self.total, return_inverse=True)
        self.mig_bw = sc.host_bw / (2 * 8000)  # MB/s available for migration (half the link)
        # the one host/workload model: hosts with named resources, VM i = row i of its workload
        # table (host, demand, utilization window); host_of and vm_hist are that table's columns
        self.state = _build_state(sc)
        self.host_of = self.state.workloads.host
        self.key = np.zeros(self.V, dtype=np.int64)
        self.in_mig = np.zeros(self.V, dtype=bool)
        self.next_key = 0
        self.in_flight = np.zeros(self.V, dtype=np.int64)  # copies of each VM in flight
        # migrations in flight from q_head on, sorted by (completion time, start sequence)
        self.q_tc = np.zeros(0)
        self.q_seq = np.zeros(0, dtype=np.int64)
        self.q_vm = np.zeros(0, dtype=np.int64)
        self.q_dst = np.zeros(0, dtype=np.int64)
        self.q_key = np.zeros(0, dtype=np.int64)
        self.q_head = 0
        self.seq = 0
        self._cols: dict[int, np.ndarray] = {}  # contiguous copies of recently read trace columns
        self._slopes: dict[int, np.ndarray] = {}
        self._work = Workspace()
        self.migrations = 0
        self.removed = 0
        self.rules: dict[str, int] = {}
        self.trace_migrations: list[tuple[float, int, int, int]] = []
        self.trace_frames: list[tuple[float, float]] = []
        self.plan_cfg: PlanConfig | None = None
        # the balancing policy plan_balancing runs: the paper's (CloudSim's) or the adaptive one
        self.policy: PabfdPolicy | None = None
        if spec.detector is not None:
            assert spec.param is not None and spec.selector is not None
            self.plan_cfg = quirks.plan_config(
                sc.power,
                quirks.detector(spec.detector, spec.param, FALLBACK_THRESHOLD, sc.interval_s),
                Selector(spec.selector, seed=seed),
                underload_limit,
            )
            kind = AdaptivePolicy if spec.name == ADAPTIVE else PabfdPolicy
            self.policy = kind(self.plan_cfg, spec.name)

    @property
    def vm_hist(self) -> np.ndarray:
        """(V, HISTORY) CPU utilization per VM, newest first: the workload table's window."""
        return self.state.workloads.util

    # --- placement at t = 0 ------------------------------------------------------------
    def _append(self, vm: int | np.ndarray, h: int | np.ndarray) -> None:
        """Put a VM (or distinct VMs, in order) at the end of its host's list: the next list key."""
        n = int(np.size(vm))
        # rows only: the hosts' totals are re-counted once per epoch, before planning (_plan)
        self.state.workloads.move_rows(vm, h, account=False)  # type: ignore[arg-type]
        self.key[vm] = np.arange(self.next_key, self.next_key + n).reshape(np.shape(vm))
        self.next_key += n

    def initial_placement(self) -> None:
        sc = self.sc
        req = sc.vm_mips.copy()  # a VM being instantiated requests its full MIPS
        H = self.H
        if self.plan_cfg is None:  # first fit in host order (PowerVmAllocationPolicySimple)
            avail = self.total.copy()
            ram = sc.host_ram.copy()
            bw = sc.host_bw.copy()
            for v in range(self.V):
                ok = (self.pe >= req[v]) & (avail >= req[v]) & (ram >= sc.vm_ram[v]) & (bw >= sc.vm_bw[v])
                hs = np.flatnonzero(ok)
                if not hs.size:
                    raise InvalidInputError(f"VM {v} fits on no host at t=0")
                h = int(hs[0])
                avail[h] -= req[v]
                ram[h] -= sc.vm_ram[v]
                bw[h] -= sc.vm_bw[v]
                self._append(v, h)
            return
        # at t = 0 a VM requests its full MIPS, RAM and bandwidth while it is created; the link
        # bounds how many VMs a host takes, and once created a VM requests 0 MIPS until its cloudlet
        # starts (CloudSim Vm.getCurrentRequestedMips), so the overload checks of the placement only
        # see the VM being placed (kept in both modes: counting every VM at its full MIPS would
        # refuse most placements)
        assert self.policy is not None
        view = self._balancing_view(
            req,
            Share(util=np.zeros(H), alloc_sum=np.zeros(H), avail=self.total.copy()),
            lists=[[] for _ in range(H)],
            order=np.zeros(0, dtype=np.intp),
            check_ram=True,
            slots=np.floor(sc.host_bw / sc.vm_bw.max()),
        )
        hosts = plan_initial(view, self.policy, settled_req=np.zeros(self.V))
        bad = np.flatnonzero(hosts < 0)
        if bad.size:
            raise InvalidInputError(f"VM {int(bad[0])} fits on no host at t=0")
        self._append(np.arange(self.V), hosts)

    def _balancing_view(
        self,
        req: np.ndarray,
        share: Share,
        lists: list[list[int]],
        order: np.ndarray,
        check_ram: bool,
        slots: np.ndarray | None = None,
    ) -> BalancingView:
        """This instant of the model as the planner reads it: the requests, the CPU share just
        computed (with the migrations in flight) and the hosts' lists in CloudSim's order."""
        sc = self.sc
        return BalancingView(
            self.state,
            sc.power,
            cpu=CPU,
            memory=RAM,
            pe=self.pe,
            power_model=sc.host_model,
            requested=req,
            share=share,
            lists=lists,
            order=order,
            check_ram=check_ram,
            mig_bw_mb_s=float(self.mig_bw.min()),
            slots=slots,
            types=(self.type_mips, self.htype),
        )

    # --- one allocation pass -----------------------------------------------------------
    def _allocate(self, req: np.ndarray) -> Allocation:
        h = self.q_head
        f_vm, f_dst, f_key = self.q_vm[h:], self.q_dst[h:], self.q_key[h:]
        return allocate(
            req, self.host_of, self.key, self.in_mig, f_vm, f_dst, f_key, self.pe, self.total, self._work,
            self.sharing,
        )

    def _col(self, i: int) -> np.ndarray:
        c = self._cols.get(i)
        if c is None:
            if len(self._cols) >= 4:
                del self._cols[next(iter(self._cols))]
            c = self._cols[i] = np.ascontiguousarray(self.sc.util[:, i])
        return c

    def _util(self, t: float) -> np.ndarray:
        """:func:`utilization_at` with the same operations, reading contiguous cached columns (a
        trace column is a strided gather) and reusing the slope between two samples."""
        interval = self.sc.interval_s
        if t % interval == 0:
            return self._col(int(t) // int(interval))
        t1 = math.floor(t / interval)
        t2 = math.ceil(t / interval)
        if t2 - t1 != 1:  # not reached for t % interval != 0; kept for the exact formula
            return utilization_at(self.sc.util, t, interval)
        delta = self._slopes.get(t1)
        if delta is None:
            if len(self._slopes) >= 2:
                del self._slopes[next(iter(self._slopes))]
            delta = self._slopes[t1] = (self._col(t2) - self._col(t1)) / ((t2 - t1) * interval)
        return self._col(t1) + delta * (t - t1 * interval)

    def run(self, progress: Progress | None = None, clock: SimClock | None = None) -> SimResult:
        """Run the day on the clock core: one timer event per decision epoch (utilization update,
        accounting, balancing), one event per distinct migration completion instant (all the
        completions of that instant applied in one vectorized step), and an end event.

        Same-instant order: the epoch's tick before the completions that fall on it, as in
        CloudSim's future queue. ``clock``: a fresh :class:`SimClock` at the scenario's start by
        default (a tracing clock records the event order).
        """
        t0 = _time.perf_counter()
        sc = self.sc
        H, V = self.H, self.V
        self.initial_placement()
        self.initial_hosts = self.host_of.copy()
        npa = self.spec.name == "npa"
        acc = _Acc(
            host_active_s=np.zeros(H),
            host_viol_s=np.zeros(H),
            vm_req=np.zeros(V),
            vm_alloc=np.zeros(V),
            vm_mig_under=np.zeros(V),
        )
        max_power = sc.power.max_power(sc.host_model).sum()
        prev: Allocation | None = None
        prev_u = np.zeros(H)
        prev_t = 0.0
        prev_active = np.ones(H, dtype=bool)
        steps = int(math.floor((sc.end_s - sc.start_s) / sc.interval_s))
        ts: list[float] = []
        act: list[int] = []
        pw: list[float] = []
        slav: list[float] = []
        migs: list[int] = []

        def advance(t: float, pre: Allocation) -> None:
            """Close the frame [prev_t, t]: energy from prev_u to pre's utilization, SLA from prev."""
            nonlocal prev_t
            dt = t - prev_t
            if dt > 0:
                if npa:
                    e = max_power * dt
                else:
                    now_u = np.minimum(clip_utilization(pre.util_mips / self.total), 1.0)
                    pu = np.minimum(prev_u, 1.0)
                    p0 = sc.power.power(sc.host_model, pu)
                    p1 = sc.power.power(sc.host_model, now_u)
                    e = float(np.where(prev_u == 0, 0.0, (p0 + (p1 - p0) / 2) * dt).sum())
                acc.energy_ws += e
                if self.record:
                    self.trace_frames.append((t, e))
                if prev is not None:
                    active = prev.util_mips > 0
                    acc.host_active_s += np.where(active, dt, 0.0)
                    acc.host_viol_s += np.where(active & (prev.util_mips < prev.req_mips), dt, 0.0)
                    acc.vm_req += prev.vm_req * dt
                    acc.vm_alloc += prev.vm_alloc * dt
                    under = prev.vm_alloc < prev.vm_req
                    if under.any():
                        rq = prev.vm_req[under]
                        acc.viol_sum += float(((rq - prev.vm_alloc[under]) / rq).sum())
                        acc.viol_n += int(under.sum())
                        mig = under & prev.vm_in_mig
                        acc.vm_mig_under += np.where(mig, (prev.vm_req - prev.vm_alloc) * dt, 0.0)
            prev_t = t

        def settle(post: Allocation) -> None:
            nonlocal prev, prev_u, prev_active
            prev = post
            prev_u = clip_utilization(post.util_mips / self.total)
            active = post.util_mips > 0
            acc.shutdowns += int((prev_active & ~active).sum())
            prev_active = active

        clock = clock if clock is not None else SimClock(start=sc.start_s)
        ticks = 0  # decision epochs: every interval from start + interval, none after the end
        t_last = t_next = sc.start_s
        for _ in range(steps):
            t_next = t_next + sc.interval_s  # accumulated in doubles, as the timer does
            if t_next > sc.end_s:
                break
            t_last, ticks = t_next, ticks + 1
        due: set[float] = set()  # instants with a completion event on the clock

        def tick(t: float) -> None:
            if ts and progress is not None:
                progress(len(ts), steps)  # the previous epoch and its completions are done
            u_t = self._util(t)
            req = u_t * sc.vm_mips
            pre = self._allocate(req)
            advance(t, pre)
            self._remove_finished(req)
            if (t - sc.start_s) % sc.interval_s == 0:  # PowerVm history sample
                self._push_history(u_t)
            started = 0
            if self.plan_cfg is not None:
                plan = self._plan(req, pre)
                if self.limits is not None:
                    plan = self._admit(plan, t)
                started = self._start(plan, t)
            post = self._allocate(req) if started else pre
            settle(post)
            ts.append(t)
            a = post.util_mips > 0
            act.append(int(a.sum()))
            u = np.minimum(prev_u, 1.0)
            pw.append(float(np.where(a, sc.power.power(sc.host_model, u), 0.0).sum()))
            slav.append(float((a & (post.util_mips < post.req_mips)).sum() / max(int(a.sum()), 1)))
            migs.append(started)
            if started:  # one completion event per new instant
                for tc in np.unique(self.q_tc[self.q_head :]).tolist():
                    if tc not in due:
                        due.add(tc)
                        clock.post(tc, COMPLETE, complete, tc)

        def complete(tc: float) -> None:
            """The migrations that end at tc, in queue order."""
            due.discard(tc)
            reqc = self._util(tc) * sc.vm_mips
            advance(tc, self._allocate(reqc))
            self._remove_finished(reqc)
            self._complete(int(np.searchsorted(self.q_tc, tc, side="right")))
            self._remove_finished(reqc)
            settle(self._allocate(reqc))

        def end(_: object) -> None:
            if progress is not None and ts:
                progress(len(ts), steps)
            clock.stop()

        clock.every(sc.interval_s, tick, start=sc.start_s + sc.interval_s, count=ticks, priority=TICK)
        if t_last + sc.interval_s <= sc.end_s:  # no next epoch: stop before it
            clock.post(t_last + sc.interval_s, END_BEFORE, end)
        else:  # the day ends: what completes at end_s still counts
            clock.post(sc.end_s, END_AFTER, end)
        clock.run()
        return self._result(acc, t0, ts, act, pw, slav, migs)

    def _push_history(self, u: np.ndarray) -> None:
        """vm_hist[:, 1:] = vm_hist[:, :-1]; vm_hist[:, 0] = u (the table's sliding window)."""
        self.state.workloads.push(u)

    def _remove_finished(self, req: np.ndarray) -> None:
        """CloudSim treats a VM requesting 0 MIPS as completed and removes it for good
        (PowerDatacenter: host.getCompletedVms()); VMs in migration are spared."""
        if not self.quirks.idle_vms_finish:
            return
        gone = (req == 0) & (self.host_of >= 0) & ~self.in_mig
        if gone.any():
            rows = np.flatnonzero(gone)
            self.state.workloads.move_rows(rows, np.full(rows.size, -1), account=False)
            self.removed += int(rows.size)

    # --- decisions and migrations --------------------------------------------------------
    def _plan(self, req: np.ndarray, pre: Allocation) -> list[Action]:
        """The planner's migrations at this epoch (plan_balancing on the model's current view)."""
        assert self.policy is not None
        self.state.recount()  # the model's host totals, as the planner may read them
        order = pre.order[self.host_of[pre.order] >= 0]
        hs = self.host_of[order]
        by_host = order[key_order(hs)]  # list order kept within each host (ties by position)
        bounds = np.cumsum(np.bincount(hs, minlength=self.H))
        flat = by_host.tolist()
        starts = [0, *bounds[:-1].tolist()]
        collect = gc.isenabled()
        # one list per host, the planner's copies, one action per migration: all acyclic and
        # short-lived; allocation-triggered collections would cost more than the objects
        gc.disable()
        try:
            lists = [flat[a:b] for a, b in zip(starts, bounds.tolist(), strict=True)]
            view = self._balancing_view(
                req,
                Share(util=pre.util_mips, alloc_sum=pre.alloc_sum, avail=pre.avail),
                lists=lists,
                order=order,
                check_ram=self.check_ram,
            )
            return plan_balancing(view, self.policy, power=False)
        finally:
            if collect:
                gc.enable()

    def _admit(self, plan: list[Action], t: float) -> list[Action]:
        """The planned migrations the balancing limits let start now (the controller's `admit`):
        slots per host (in and out) and for the pool counted over the migrations in flight, the
        cool-down since a VM's last move, no return to the host it left within it. The
        simulator's moves are overload relief and evacuations: none has to pay for itself."""
        lim = self.limits
        if not plan or lim is None:
            return plan
        vms = np.fromiter((m.workload for m in plan), dtype=np.int64, count=len(plan))
        dst = np.fromiter((m.dst for m in plan), dtype=np.int64, count=len(plan))
        src = self.host_of[vms].astype(np.int64)
        fl = self.q_vm[self.q_head:]
        busy = np.bincount(self.q_dst[self.q_head:], minlength=self.H) + np.bincount(
            self.mig_src[fl][self.mig_src[fl] >= 0], minlength=self.H)
        since = t - self.last_move[vms]
        returns = (self.left_host[vms] == dst) & (since < lim.cooldown_s)
        ok, why = admit(src, dst, since_moved=since, returns=returns, net_gain=np.zeros(vms.size),
                        needs_gain=np.zeros(vms.size, dtype=bool), busy=busy, pool_busy=int(fl.size),
                        limits=lim)
        for w in why:
            if w:
                self.held[w] = self.held.get(w, 0) + 1
        keep = np.flatnonzero(ok)
        self.last_move[vms[keep]] = t
        self.left_host[vms[keep]] = src[keep]
        self.mig_src[vms[keep]] = src[keep]
        return [plan[i] for i in keep.tolist()]

    def _start(self, plan: list[Action], t: float) -> int:
        """Start the planned migrations at t, in plan order (their completion order on ties)."""
        if not plan:
            return 0
        vms = np.fromiter((m.workload for m in plan), dtype=np.intp, count=len(plan))
        dsts = np.fromiter((m.dst for m in plan), dtype=np.intp, count=len(plan))
        if self.record:
            self.trace_migrations.extend(
                zip([t] * len(plan), vms.tolist(), self.host_of[vms].tolist(), dsts.tolist(), strict=True)
            )
        n = len(plan)
        self.in_mig[vms] = True
        np.add.at(self.in_flight, vms, 1)
        done = t + self.sc.vm_ram[vms] / self.mig_bw[dsts]  # t + RAM / (BW / 2)
        h = self.q_head
        tc = np.concatenate([self.q_tc[h:], done])
        seq = np.concatenate([self.q_seq[h:], self.seq + np.arange(n, dtype=np.int64)])
        q = np.lexsort((seq, tc))  # (time, seq): the heap order of CloudSim's event queue
        self.q_tc, self.q_seq = tc[q], seq[q]
        self.q_vm = np.concatenate([self.q_vm[h:], vms.astype(np.int64)])[q]
        self.q_dst = np.concatenate([self.q_dst[h:], dsts.astype(np.int64)])[q]
        self.q_key = np.concatenate([self.q_key[h:], self.next_key + np.arange(n, dtype=np.int64)])[q]
        self.q_head = 0
        self.seq += n
        self.next_key += n
        for m in plan:
            self.rules[m.rule] = self.rules.get(m.rule, 0) + 1
        self.migrations += n
        return n

    def _complete(self, stop: int) -> None:
        """Complete the queued migrations q_head..stop (one instant) in queue order: each VM joins
        its target's list with the next key."""
        lo = self.q_head
        vm, dst = self.q_vm[lo:stop], self.q_dst[lo:stop]
        n = stop - lo
        self.q_head = stop
        if np.unique(vm).size < n:  # a VM twice in one instant: one by one, as the queue would
            for v, d in zip(vm.tolist(), dst.tolist(), strict=True):
                self.in_flight[v] -= 1
                self._append(v, d)
                self.in_mig[v] = False if self.quirks.migration_flag_cleared_early else self.in_flight[v] > 0
            return
        self.in_flight[vm] -= 1
        self._append(vm, dst)
        # CloudSim clears the flag at the first completion even if another copy is in flight
        self.in_mig[vm] = False if self.quirks.migration_flag_cleared_early else self.in_flight[vm] > 0

    # --- metrics -------------------------------------------------------------------------
    def _result(
        self,
        acc: _Acc,
        t0: float,
        ts: list[float],
        act: list[int],
        pw: list[float],
        slav: list[float],
        migs: list[int],
    ) -> SimResult:
        energy_kwh = acc.energy_ws / 3.6e6
        tot_req = float(acc.vm_req.sum())
        if self.quirks.pooled_sla:
            act_s = float(acc.host_active_s.sum())
            slatah = float(acc.host_viol_s.sum()) / act_s if act_s > 0 else 0.0
            pdm = float(acc.vm_mig_under.sum()) / tot_req if tot_req > 0 else 0.0
        else:
            used = acc.host_active_s > 0
            slatah = float((acc.host_viol_s[used] / acc.host_active_s[used]).mean()) if used.any() else 0.0
            has = acc.vm_req > 0
            pdm = float((acc.vm_mig_under[has] / acc.vm_req[has]).mean()) if has.any() else 0.0
        slav_v = slatah * pdm
        metrics: dict[str, float | int] = {
            "energy_kwh": energy_kwh,
            "migrations": self.migrations,
            "slatah": slatah,
            "pdm": pdm,
            "slav": slav_v,
            "esv": energy_kwh * slav_v,
            "sla_overall": (tot_req - float(acc.vm_alloc.sum())) / tot_req if tot_req > 0 else 0.0,
            "sla_average": acc.viol_sum / acc.viol_n if acc.viol_n else 0.0,
            "host_shutdowns": acc.shutdowns,
            "hosts": self.H,
            "vms": self.V,
            "wall_s": _time.perf_counter() - t0,
        }
        if self.limits is not None:
            metrics["held_by_limits"] = sum(self.held.values())
        return SimResult(
            policy=self.spec.name,
            param=self.spec.param,
            compat=self.quirks.label,
            trace=self.sc.name,
            seed=self.seed,
            metrics=metrics,
            time_s=np.asarray(ts),
            active_hosts=np.asarray(act, dtype=np.int64),
            power_w=np.asarray(pw),
            sla_violation=np.asarray(slav),
            migrations=np.asarray(migs, dtype=np.int64),
            rules=dict(self.rules),
        )
