"""Dynamic VM consolidation (Beloglazov & Buyya): overload relief + underload consolidation.

``plan_migrations`` is a pure function of a :class:`PoolView` snapshot: it returns the list of
migrations (each with the rule that fired) and leaves the view untouched. It follows CloudSim
3.0.3's PowerVmAllocationPolicyMigrationAbstract.optimizeAllocation step by step, including the
places where the running plan feeds back into later choices:

1. overloaded hosts (detector), in host order;
2. from each, VMs are taken (selection policy) until it is no longer overloaded;
3. those VMs, by decreasing CPU demand, go to the host with the least power increase (PABFD),
   excluding overloaded hosts (switched-off hosts may be woken up);
4. underload: hosts by increasing measured utilization try to move *all* their VMs elsewhere
   (all or nothing), excluding overloaded, switched-off and already tried hosts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolvisor.policies.balancing.detection import RULE_UNDERLOAD, RULES, Detector
from poolvisor.policies.balancing.power import PowerTable
from poolvisor.policies.balancing.selection import Selector


@dataclass(frozen=True)
class Migration:
    vm: int
    src: int
    dst: int
    rule: str


@dataclass
class PoolView:
    """Columnar snapshot of hosts and VMs at a decision epoch (arrays are copied by the planner).

    Hosts: ``total``/``pe`` MIPS, power ``model`` index, history ``htype`` (index into
    ``contrib``), ``measured_u`` (utilization measured at the last update), ``alloc_sum`` (MIPS
    allocated to the VMs in the host's list), ``avail`` (unallocated MIPS), ``req_sum`` (requested
    MIPS), ``ram_free`` (MB, only checked when ``check_ram``), ``hist``/``hlen``/``max_ram``.
    VMs: ``req`` (requested MIPS now), ``mips``, ``ram``, ``vm_hist``/``vm_hlen`` (utilization
    history, newest first), ``contrib[t, v]`` = VM history scaled to a host of history type t.
    ``lists[h]`` is host h's VM list in order.
    """

    total: np.ndarray
    pe: np.ndarray
    model: np.ndarray
    htype: np.ndarray
    measured_u: np.ndarray
    alloc_sum: np.ndarray
    avail: np.ndarray
    req_sum: np.ndarray
    ram_free: np.ndarray
    hist: np.ndarray
    hlen: np.ndarray
    max_ram: np.ndarray
    lists: list[list[int]]
    req: np.ndarray
    mips: np.ndarray
    ram: np.ndarray
    vm_hist: np.ndarray
    vm_hlen: np.ndarray
    contrib: np.ndarray
    check_ram: bool = False
    mig_bw_mb_s: float = 62.5


@dataclass
class PlanConfig:
    """Switches between CloudSim's behaviour (``compat``) and the corrected one."""

    power: PowerTable
    detector: Detector
    selector: Selector = field(default_factory=Selector)
    #: CloudSim compares the planned power with the *measured* (pre-plan) power of a host.
    stale_power: bool = True
    #: CloudSim means to exclude overload targets from the underload search but passes an empty list.
    exclude_overload_targets: bool = False
    #: CloudSim does not cap the underload search; the paper's algorithm is the same loop.
    underload: bool = True


class _Planner:
    def __init__(self, view: PoolView, cfg: PlanConfig) -> None:
        self.v = view
        self.cfg = cfg
        self.alloc_sum = view.alloc_sum.copy()
        self.avail = view.avail.copy()
        self.req_sum = view.req_sum.copy()
        self.ram_free = view.ram_free.copy()
        self.hist = view.hist.copy()
        self.hlen = view.hlen.copy()
        self.max_ram = view.max_ram.copy()
        self.lists = [list(lst) for lst in view.lists]
        self.p_now = cfg.power.power(view.model, np.minimum(view.measured_u, 1.0))
        self.undo: list[tuple] = []
        d = cfg.detector
        self.linear = d.linear and view.hist.shape[1] >= d.regression_window
        self.cheap_check = self.linear or not d.uses_history
        if self.linear:
            self.lr_m, self.lr_g = d.lr_parts(view.hist)
            self.vm_m, self.vm_g = d.lr_parts(view.contrib)  # (T, V)
        else:
            self.lr_m = self.lr_g = np.zeros(0)
            self.vm_m = self.vm_g = np.zeros((0, 0))

    # --- host statistics -------------------------------------------------------------
    def stats_of(self, h: int, lst: list[int]) -> None:
        """Recompute host h's sums from its list (sequential sums, in list order, like CloudSim)."""
        v = self.v
        self.req_sum[h] = float(sum(v.req[i] for i in lst)) if lst else 0.0
        if v.hist.shape[1] and lst:
            acc = np.cumsum(v.contrib[v.htype[h], lst], axis=0)[-1]
            self.hist[h] = acc
            nz = np.flatnonzero(acc)
            self.hlen[h] = nz[-1] + 1 if nz.size else 0
        else:
            self.hist[h] = 0.0
            self.hlen[h] = 0
        self.max_ram[h] = max((v.ram[i] for i in lst), default=-np.inf)
        if self.linear:
            m, g = self.cfg.detector.lr_parts(self.hist[h])
            self.lr_m[h], self.lr_g[h] = float(m), float(g)

    def overloaded(self, hs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.cfg.detector
        ru = self.req_sum[hs] / self.v.total[hs]
        if not d.uses_history:
            return d.overloaded(ru)
        if self.linear and hs.size == 1:  # re-check of one host while VMs are being taken off it
            over = d.lr_overloaded_from_parts(
                self.lr_m[hs], self.lr_g[hs], self.hlen[hs], self.max_ram[hs] / self.v.mig_bw_mb_s, ru
            )
            return over, over.astype(np.intp)
        return d.overloaded(ru, self.hist[hs], self.hlen[hs], self.max_ram[hs] / self.v.mig_bw_mb_s)

    def over_after(self, vm: int, hs: np.ndarray) -> np.ndarray:
        """Would each host in hs be overloaded with vm added at the end of its list?"""
        v, d = self.v, self.cfg.detector
        ru = (self.req_sum[hs] + v.req[vm]) / v.total[hs]
        if not d.uses_history:
            over = d.overloaded(ru)[0]
        elif self.linear:
            t = v.htype[hs]
            hlen = np.maximum(self.hlen[hs], v.vm_hlen[vm])
            mr = np.maximum(self.max_ram[hs], v.ram[vm])
            over = d.lr_overloaded_from_parts(
                self.lr_m[hs] + self.vm_m[t, vm],
                self.lr_g[hs] + self.vm_g[t, vm],
                hlen,
                mr / v.mig_bw_mb_s,
                ru,
            )
        else:
            hist = self.hist[hs] + v.contrib[v.htype[hs], vm]
            hlen = np.maximum(self.hlen[hs], v.vm_hlen[vm])
            mr = np.maximum(self.max_ram[hs], v.ram[vm])
            over = d.overloaded(ru, hist, hlen, mr / v.mig_bw_mb_s)[0]
        if v.check_ram:
            over = over | (self.ram_free[hs] < v.ram[vm])
        return over

    # --- PABFD ---------------------------------------------------------------------------
    def find_host(self, vm: int, cand: np.ndarray) -> int:
        """Host among ``cand`` (ascending ids) with the least power increase for vm, or -1."""
        v = self.v
        r = v.req[vm]
        ok = (v.pe[cand] >= r) & (self.avail[cand] >= r)
        if v.check_ram:
            ok &= self.ram_free[cand] >= v.ram[vm]
        c = cand[ok]
        if not c.size:
            return -1
        asum = self.alloc_sum[c]
        if self.cheap_check:  # evaluate everywhere, keep where the host is non-empty
            keep = ~(self.over_after(vm, c) & (asum != 0))
        else:
            ne = asum != 0
            keep = np.ones(c.size, dtype=bool)
            if ne.any():
                keep[ne] = ~self.over_after(vm, c[ne])
        if not keep.all():
            c = c[keep]
            if not c.size:
                return -1
            asum = asum[keep]
        u = np.minimum((asum + r) / v.total[c], 1.0)
        after = self.cfg.power.power(v.model[c], u)
        if self.cfg.stale_power:
            diff = after - self.p_now[c]
        else:
            cur = self.cfg.power.power(v.model[c], np.minimum(asum / v.total[c], 1.0))
            diff = after - np.where(asum != 0, cur, self.p_now[c])
        return int(c[int(np.argmin(diff))])

    def place(self, vm: int, h: int) -> None:
        v = self.v
        self.undo.append(
            (
                h,
                self.lr_m[h] if self.linear else 0.0,
                self.lr_g[h] if self.linear else 0.0,
                self.alloc_sum[h],
                self.avail[h],
                self.req_sum[h],
                self.ram_free[h],
                self.hist[h].copy(),
                self.hlen[h],
                self.max_ram[h],
            )
        )
        r = v.req[vm]
        self.lists[h].append(vm)
        self.alloc_sum[h] += min(r, v.pe[h]) if self.avail[h] > 0 else 0.0
        self.avail[h] = max(self.avail[h] - r, 0.0) if self.avail[h] > 0 else 0.0
        self.req_sum[h] += r
        self.ram_free[h] -= v.ram[vm]
        if v.hist.shape[1]:
            self.hist[h] += v.contrib[v.htype[h], vm]
            self.hlen[h] = max(self.hlen[h], v.vm_hlen[vm])
            if self.linear:
                self.lr_m[h] += self.vm_m[v.htype[h], vm]
                self.lr_g[h] += self.vm_g[v.htype[h], vm]
        self.max_ram[h] = max(self.max_ram[h], v.ram[vm])

    def rollback(self, n: int) -> None:
        for _ in range(n):
            h, lm, lg, a, av, rs, rf, hi, hl, mr = self.undo.pop()
            if self.linear:
                self.lr_m[h], self.lr_g[h] = lm, lg
            self.lists[h].pop()
            self.alloc_sum[h], self.avail[h], self.req_sum[h], self.ram_free[h] = a, av, rs, rf
            self.hist[h], self.hlen[h], self.max_ram[h] = hi, hl, mr

    def by_demand(self, vms: list[int]) -> list[int]:
        """Decreasing requested MIPS, stable (CloudSim PowerVmList.sortByCpuUtilization)."""
        req = self.v.req[vms]
        return [vms[i] for i in np.argsort(-req, kind="stable")]


def plan_migrations(view: PoolView, cfg: PlanConfig) -> list[Migration]:
    """The migrations CloudSim's optimizeAllocation would start at this epoch (see module doc)."""
    p = _Planner(view, cfg)
    H = view.total.size
    all_hosts = np.arange(H)
    over, rule = p.overloaded(all_hosts)
    over_ids = np.flatnonzero(over)

    # 2. VM selection from overloaded hosts
    picked: list[tuple[int, int, str]] = []
    for h in over_ids:
        lst = p.lists[h]
        while lst:
            idx = np.asarray(lst)
            k = cfg.selector.pick(
                view.ram[idx], view.req[idx] / view.mips[idx], view.vm_hist[idx], view.vm_hlen[idx]
            )
            vm = lst.pop(k)
            picked.append((vm, int(h), RULES[rule[h]]))
            p.stats_of(int(h), lst)
            if not p.overloaded(np.array([h]))[0][0]:
                break

    # 3. placement of the selected VMs (PABFD), overloaded hosts excluded
    out: list[Migration] = []
    src_rule = {vm: (s, r) for vm, s, r in picked}
    cand = all_hosts[~over]
    for vm in p.by_demand([vm for vm, _, _ in picked]):
        dst = p.find_host(vm, cand)
        if dst >= 0:
            p.place(vm, dst)
            s, r = src_rule[vm]
            out.append(Migration(vm, s, dst, r))
    if not cfg.underload:
        return out

    # 4. underload consolidation, all or nothing per host
    switched_off = view.measured_u == 0
    excl_src = over | switched_off
    place_ok = ~(over | switched_off)
    if cfg.exclude_overload_targets:
        for m in out:
            excl_src[m.dst] = True
    mu = view.measured_u
    nonempty = np.fromiter((len(lst) > 0 for lst in p.lists), dtype=bool, count=H)
    sources = np.flatnonzero(~excl_src & (mu > 0) & (mu < 1) & nonempty)
    sources = sources[np.lexsort((sources, mu[sources]))]
    for h in sources:
        if excl_src[h]:
            continue
        excl_src[h] = True
        place_ok[h] = False
        vms = p.lists[h]
        if not vms:
            continue
        cand = np.flatnonzero(place_ok)
        batch: list[Migration] = []
        for vm in p.by_demand(list(vms)):
            dst = p.find_host(vm, cand)
            if dst < 0:
                p.rollback(len(batch))
                batch = []
                break
            p.place(vm, dst)
            batch.append(Migration(vm, int(h), dst, RULES[RULE_UNDERLOAD]))
        for m in batch:
            excl_src[m.dst] = True
        out.extend(batch)
    return out
