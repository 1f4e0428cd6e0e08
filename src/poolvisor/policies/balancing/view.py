"""What a balancing policy sees: one ClusterState (hosts and their workload table) at one instant.

The live pool and the simulators build the same model: hosts with named resources and the
workload table (host, demand, utilization window; :mod:`poolvisor.state.workloads`). The CPU the
policies reason about is one resource of it (``cpu``, e.g. ``vcpu`` live, ``mips`` in the
PlanetLab simulator) in view units (``cpu_scale`` view units per resource unit); CloudSim's PE
is a per-host cap on one workload's CPU (``pe``, default: the host's whole CPU), its power model
an index into a power table. Everything else a policy needs is derived here
(:func:`pool_view`: the PABFD planner's columns), from the table's columns, or taken from what
the caller measured at this instant (``share``, ``lists``: the simulator's CPU share with its
migrations in flight and its hosts' list order; by default the requests are granted, capped at
one PE and scaled down on a host whose requests exceed its CPU, and lists follow table rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poolvisor.policies.balancing.consolidation import PoolView
from poolvisor.policies.balancing.power import PowerTable, clip_utilization
from poolvisor.state.cluster import ClusterState

#: what a workload with no utilization sample requests: its whole CPU demand (as the what-if replay)
NO_SAMPLE_UTIL = 1.0
#: the live pool's view: CPU in MIPS per vCPU (as the what-if replay, services/whatif.MIPS_PER_CORE),
#: utilization on a 5-minute grid, hosts without a declared power curve at 100 W idle .. 250 W
LIVE_CPU_SCALE = 1000.0
LIVE_INTERVAL_S = 300.0
LIVE_POWER = PowerTable.of(PowerTable.linear(100.0, 250.0))


@dataclass(frozen=True)
class Share:
    """A CPU share of the hosts at one instant: CPU used (``util``), allocated to the workloads in
    their lists (``alloc_sum``) and not allocated (``avail``), per host, in view units."""

    util: np.ndarray
    alloc_sum: np.ndarray
    avail: np.ndarray


@dataclass
class BalancingView:
    """One instant of one pool, as every balancing policy reads it (see the module doc)."""

    state: ClusterState
    power: PowerTable
    cpu: str = "vcpu"
    memory: str = "memory_mib"
    cpu_scale: float = 1.0
    #: (H,) the largest CPU one workload can get on each host (CloudSim: one PE); None: all of it
    pe: np.ndarray | None = None
    #: (H,) power model per host (index into ``power``); None: model 0 everywhere
    power_model: np.ndarray | None = None
    #: (V,) CPU each workload requests now (view units); None: newest window sample x its CPU
    requested: np.ndarray | None = None
    #: the caller's measured CPU share; None: derived from the requests (module doc)
    share: Share | None = None
    #: each host's workload rows in list order, and all placed rows in list order (both or neither)
    lists: list[list[int]] | None = None
    order: np.ndarray | None = None
    #: RAM limits placement (else only CPU does)
    check_ram: bool = False
    #: MB/s a migration moves (the LR detector looks ahead by the longest one)
    mig_bw_mb_s: float = 62.5
    #: (H,) how many more workloads each host may take (None: no limit)
    slots: np.ndarray | None = None
    #: history type per host and the distinct CPU totals (a cache the simulator keeps per run)
    types: tuple[np.ndarray, np.ndarray] | None = None
    #: workload row -> (group key, soft policy) for workloads of soft-affinity/anti-affinity
    #: groups (soft.py: moves weigh them); None: no soft rule (the simulators)
    soft: dict[int, tuple[str, str]] | None = None

    # ---- the model's columns in view units -------------------------------------------------------
    def total(self) -> np.ndarray:
        c = self.state.raw_capacity[self.state.resources.index(self.cpu)]
        return c if self.cpu_scale == 1.0 else c * self.cpu_scale

    def workload_cpu(self) -> np.ndarray:
        d = self.state.workloads.demand[self.state.resources.index(self.cpu)]
        return d if self.cpu_scale == 1.0 else d * self.cpu_scale

    def host_pe(self) -> np.ndarray:
        return self.total() if self.pe is None else self.pe

    def models(self) -> np.ndarray:
        if self.power_model is None:
            return np.zeros(self.state.n, dtype=np.intp)
        return self.power_model

    def request(self) -> np.ndarray:
        if self.requested is not None:
            return self.requested
        t = self.state.workloads
        u = np.where(t.samples > 0, t.util[:, 0], NO_SAMPLE_UTIL)
        return u * self.workload_cpu()

    def list_order(self) -> tuple[list[list[int]], np.ndarray]:
        if self.lists is not None and self.order is not None:
            return self.lists, self.order
        host = self.state.workloads.host
        order = np.flatnonzero(host >= 0)
        lists: list[list[int]] = [[] for _ in range(self.state.n)]
        for r, h in zip(order.tolist(), host[order].tolist(), strict=True):
            lists[h].append(r)
        return lists, order

    def measured(self, req: np.ndarray, order: np.ndarray) -> Share:
        """The caller's share, or: each request capped at one PE, granted when a host's capped
        requests fit its CPU, else all scaled by CPU / requested and floored (the simulator's
        rule with no migration in flight)."""
        if self.share is not None:
            return self.share
        total, pe = self.total(), self.host_pe()
        H = self.state.n
        hs = self.state.workloads.host[order]
        cap = np.minimum(req[order], pe[hs])
        need = np.bincount(hs, cap, H)
        fits = need <= total
        with np.errstate(divide="ignore", invalid="ignore"):
            alloc = np.where(fits[hs], cap, np.floor(cap * (total / need)[hs]))
        alloc_sum = np.bincount(hs, alloc, H)
        return Share(util=alloc_sum, alloc_sum=alloc_sum, avail=np.where(fits, total - need, 0.0))

    def host_types(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct CPU totals, index of each host's): hosts of one total share history scaling."""
        if self.types is None:
            self.types = np.unique(self.total(), return_inverse=True)
        return self.types


def pool_view(bv: BalancingView, with_history: bool) -> PoolView:
    """The PABFD planner's columns for this instant (sums in list order, as CloudSim's)."""
    st, t = bv.state, bv.state.workloads
    H, V = st.n, t.n
    req = bv.request()
    lists, order = bv.list_order()
    share = bv.measured(req, order)
    total = bv.total()
    vm_cpu = bv.workload_cpu()
    ram = t.demand[st.resources.index(bv.memory)]
    type_cpu, htype = bv.host_types()
    host_of = t.host
    window = t.util
    L = window.shape[1] if with_history else 0
    contrib = window[None, :, :L] * vm_cpu[None, :, None] / type_cpu[:, None, None]
    hist = np.zeros((H, L))
    hlen = np.zeros(H, dtype=np.int64)
    if with_history:
        hs = host_of[order]
        w = contrib[htype[hs], order]  # (V, L) in list order
        flat = (hs[:, None] * L + np.arange(L)[None, :]).ravel()
        hist = np.bincount(flat, w.ravel(), H * L).astype(np.float64, copy=False).reshape(H, L)
        nz = hist != 0
        hlen = np.where(nz.any(axis=1), L - np.argmax(nz[:, ::-1], axis=1), 0)
    vm_hlen = np.zeros(V, dtype=np.int64)
    if with_history:
        nzv = window != 0
        vm_hlen = np.where(nzv.any(axis=1), window.shape[1] - np.argmax(nzv[:, ::-1], axis=1), 0)
    max_ram = np.full(H, -np.inf)
    placed = host_of >= 0
    np.maximum.at(max_ram, host_of[placed], ram[placed])
    req_sum = np.bincount(host_of[order], req[order], H).astype(np.float64, copy=False)
    ram_free = st.raw_capacity[st.resources.index(bv.memory)].copy()
    if bv.check_ram:
        ram_free = ram_free - np.bincount(host_of[placed], ram[placed], H)
    return PoolView(
        total=total,
        pe=bv.host_pe(),
        model=bv.models(),
        htype=htype,
        measured_u=clip_utilization(share.util / total),
        alloc_sum=share.alloc_sum,
        avail=share.avail,
        req_sum=req_sum,
        ram_free=ram_free,
        hist=hist,
        hlen=hlen,
        max_ram=max_ram,
        lists=lists,
        req=req,
        mips=vm_cpu,
        ram=ram,
        vm_hist=window[:, :L],
        vm_hlen=vm_hlen,
        contrib=contrib,
        check_ram=bv.check_ram,
        mig_bw_mb_s=bv.mig_bw_mb_s,
        slots=bv.slots,
    )
