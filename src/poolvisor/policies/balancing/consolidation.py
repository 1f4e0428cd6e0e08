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
   (all or nothing), excluding overloaded, switched-off and already tried hosts (optionally at
   most ``PlanConfig.underload_limit`` tries per epoch; not a CloudSim feature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from poolvisor.policies.balancing import kernels
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
    #: at most this many underloaded hosts are tried per epoch (least utilized first); None: all
    #: of them, as CloudSim and the paper. Each try scans every candidate host for each of its VMs,
    #: so the uncapped search costs O(VMs x hosts) per epoch; a cap bounds it (scale runs).
    underload_limit: int | None = None
    #: A host with nothing allocated is switched off (the energy accounting charges it 0 W), so
    #: using it costs its whole power, idle included. CloudSim's PABFD measures the increase from
    #: the idle power P(0), so waking a sleeping host looks as cheap as loading an active one.
    off_hosts_draw_nothing: bool = False


#: hosts with more VMs than this shed them in one pass (:meth:`_Planner.shed_count`)
SHED_AT_ONCE_MIN_VMS = 8
#: batches over at least this many candidates (with 64 empty ones) scan one empty host per class
CLASSES_MIN_CANDIDATES = 256


class _Planner:
    def __init__(self, view: PoolView, cfg: PlanConfig) -> None:
        self.v = view
        self.cfg = cfg
        d = cfg.detector
        self.linear = d.linear and view.hist.shape[1] >= d.regression_window
        self.cheap_check = self.linear or not d.uses_history
        # per-host state stacked in one (11, H) array so a batch gathers its candidates at once;
        # the named attributes are row views of it
        F = np.zeros((11, view.total.size))
        F[0], F[1], F[2], F[3], F[4] = view.total, view.pe, view.avail, view.alloc_sum, view.req_sum
        F[5], F[6], F[7] = view.ram_free, view.hlen, view.max_ram
        F[8] = cfg.power.power(view.model, np.minimum(view.measured_u, 1.0))
        if cfg.off_hosts_draw_nothing:  # p_now is only read for empty hosts unless it is stale
            F[8] = np.where(view.measured_u == 0, 0.0, F[8]) if cfg.stale_power else 0.0
        if self.linear:
            F[9], F[10] = d.lr_parts(view.hist)
            self.vm_m, self.vm_g = d.lr_parts(view.contrib)  # (T, V)
        else:
            self.vm_m = self.vm_g = np.zeros((0, 0))
        self.F = F
        self.avail, self.alloc_sum, self.req_sum, self.ram_free = F[2], F[3], F[4], F[5]
        self.hlen, self.max_ram, self.p_now, self.lr_m, self.lr_g = F[6], F[7], F[8], F[9], F[10]
        self.hist = view.hist.copy()
        self.lists = [list(lst) for lst in view.lists]
        self.req_l, self.ram_l, self.vm_hlen_l = view.req.tolist(), view.ram.tolist(), view.vm_hlen.tolist()
        self.vm_m_l, self.vm_g_l = self.vm_m.tolist(), self.vm_g.tolist()
        self.vm_hlen_f = view.vm_hlen.astype(np.float64)
        sortable = d.kind in ("iqr", "mad") and view.hist.shape[1] > 0 and view.contrib.flags.c_contiguous
        self.jit = (not d.uses_history or self.linear or sortable) and kernels.available()
        self._no_hist, self._no_contrib = np.zeros((1, 1)), np.zeros((1, 1, 1))

    # --- host statistics -------------------------------------------------------------
    def stats_of(self, h: int, lst: list[int]) -> None:
        """Recompute host h's sums from its list (sequential sums, in list order, like CloudSim)."""
        v = self.v
        if len(lst) > 32:  # long lists (scale runs): the same sequential sums, in C
            idx = np.asarray(lst)
            self.req_sum[h] = float(np.cumsum(v.req[idx])[-1])
            self.max_ram[h] = float(v.ram[idx].max())
            if self.linear:
                t = int(v.htype[h])
                self.lr_m[h] = float(np.cumsum(self.vm_m[t, idx])[-1])
                self.lr_g[h] = float(np.cumsum(self.vm_g[t, idx])[-1])
                self.hlen[h] = float(v.vm_hlen[idx].max())
                return
        else:
            req = self.req_l
            self.req_sum[h] = float(sum(req[i] for i in lst)) if lst else 0.0
            self.max_ram[h] = max((self.ram_l[i] for i in lst), default=-np.inf)
            if self.linear:  # the regression is linear in the history: sum the VMs' parts
                t = int(v.htype[h])
                vm_m, vm_g, vhl = self.vm_m_l[t], self.vm_g_l[t], self.vm_hlen_l
                self.lr_m[h] = float(sum(vm_m[i] for i in lst)) if lst else 0.0
                self.lr_g[h] = float(sum(vm_g[i] for i in lst)) if lst else 0.0
                self.hlen[h] = max((vhl[i] for i in lst), default=0)
                return
        if v.hist.shape[1] and lst:
            acc = np.cumsum(v.contrib[v.htype[h], lst], axis=0)[-1]
            self.hist[h] = acc
            nz = np.flatnonzero(acc)
            self.hlen[h] = nz[-1] + 1 if nz.size else 0
        else:
            self.hist[h] = 0.0
            self.hlen[h] = 0

    def shed_count(self, h: int, idx: np.ndarray, order: np.ndarray) -> int:
        """How many VMs leave host h (list ``idx``) when they leave in ``order`` (list positions),
        each time until the host is no longer overloaded: the fewest after which
        :meth:`overloaded_one` is False (all of them if it never is). Same sequential sums in list
        order as :meth:`stats_of`; compiled, or in numpy over blocks of prefixes (removed VMs add
        0.0, which changes no sum). Only for the detectors :meth:`overloaded_one` evaluates in
        scalar arithmetic (THR, linear LR)."""
        n = idx.size
        rank = np.empty(n, dtype=np.intp)
        rank[order] = np.arange(n)
        if self.jit:
            v, d = self.v, self.cfg.detector
            _, _, xbar, sxx = d.lr_basis
            vm_m, vm_g = (self.vm_m, self.vm_g) if self.linear else (self._no_hist, self._no_hist)
            return kernels.run_shed(
                idx, rank, v.req, v.ram, v.vm_hlen, vm_m, vm_g, int(v.htype[h]), float(v.total[h]),
                1 if self.linear else 0, float(d.param), float(d.fallback), int(d.regression_window),
                float(xbar), float(sxx), float(v.mig_bw_mb_s), float(d.interval_s),
            )  # fmt: skip
        lo, size = 0, 8
        while lo < n - 1:  # a few VMs usually relieve the host: try short prefixes first
            hi = min(lo + size, n - 1)
            over = self._over_after_shedding(h, idx, rank, lo, hi)
            fine = np.flatnonzero(~over)
            if fine.size:
                return lo + int(fine[0]) + 1
            lo, size = hi, size * 8
        return n

    def _over_after_shedding(self, h: int, idx: np.ndarray, rank: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """:meth:`overloaded_one` of host h after the first k + 1 VMs of the queue left, k in [lo, hi)."""
        v, d = self.v, self.cfg.detector
        kept = rank[None, :] > np.arange(lo, hi)[:, None]  # row k: what is left after k + 1 left
        req_sum = np.cumsum(np.where(kept, v.req[idx], 0.0), axis=1)[:, -1]
        ru = req_sum / v.total[h]
        if not d.uses_history:
            return ru > d.param
        t = int(v.htype[h])
        w = d.regression_window
        _, _, xbar, sxx = d.lr_basis
        lr_m = np.cumsum(np.where(kept, self.vm_m[t, idx], 0.0), axis=1)[:, -1]
        lr_g = np.cumsum(np.where(kept, self.vm_g[t, idx], 0.0), axis=1)[:, -1]
        hlen = np.where(kept, v.vm_hlen[idx], 0).max(axis=1)
        max_ram = np.where(kept, v.ram[idx], -np.inf).max(axis=1)
        steps = np.ceil(max_ram / v.mig_bw_mb_s / d.interval_s)
        lr_over = (lr_m + lr_g / sxx * (w + steps - xbar)) * d.param >= 1
        return np.where(hlen < w, ru > d.fallback, lr_over)

    def overloaded_one(self, h: int) -> bool:
        """:meth:`overloaded` for one host, in scalar arithmetic where the detector allows it."""
        d = self.cfg.detector
        ru = self.req_sum[h] / self.v.total[h]
        if not d.uses_history:
            return bool(ru > d.param)
        if self.linear:
            w = d.regression_window
            if self.hlen[h] < w:
                return bool(ru > d.fallback)
            _, _, xbar, sxx = d.lr_basis
            steps = math.ceil(self.max_ram[h] / self.v.mig_bw_mb_s / d.interval_s)
            return bool((self.lr_m[h] + self.lr_g[h] / sxx * (w + steps - xbar)) * d.param >= 1)
        return bool(self.overloaded(np.array([h]))[0][0])

    def overloaded(self, hs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.cfg.detector
        ru = self.req_sum[hs] / self.v.total[hs]
        if not d.uses_history:
            return d.overloaded(ru)
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
        """Put vm on host h (single-VM form of a batch; used by the placement at t=0)."""
        v = self.v
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

    def place_batch(self, vms: list[int], cand: np.ndarray, all_or_nothing: bool) -> list[int] | None:
        """PABFD for ``vms`` in order over hosts ``cand``; returns each VM's host (-1: none).

        THR and linear-regression detectors use the matrix form (:meth:`_place_matrix`); the
        sorting-based detectors (IQR, MAD, robust LR) go VM by VM.
        """
        d = self.cfg.detector
        if cand.size and (not d.uses_history or self.linear or self.jit):
            return self._place_matrix(vms, cand, all_or_nothing)
        return self._place_loop(vms, cand, all_or_nothing)

    def _place_matrix(self, vms: list[int], cand: np.ndarray, all_or_nothing: bool) -> list[int] | None:
        """Score every (VM, host) pair of a chunk at once, then walk the VMs in order, re-scoring
        only the hosts that earlier VMs of the chunk were placed on (scalar arithmetic, same
        operations), so each choice sees the state CloudSim's sequential loop would see."""
        v, d, cfg = self.v, self.cfg.detector, self.cfg
        # hosts that cannot take even the smallest VM of the batch never will (capacity only shrinks)
        rmin = float(v.req[vms].min())
        cand = cand[(self.F[1, cand] >= rmin) & (self.F[2, cand] >= rmin)]
        if not cand.size:
            return None if all_or_nothing else [-1] * len(vms)
        model, ht = v.model[cand], v.htype[cand]
        G = np.ascontiguousarray(self.F[:, cand])  # rows contiguous (one compiled signature)
        if self.jit:
            return self._place_jit(vms, cand, G, model, ht, all_or_nothing)
        tot, pe, av, asum, rs, rf, hl, mr, pnow, lm, lg = G
        lin = self.linear
        bw, check_ram, stale = v.mig_bw_mb_s, v.check_ram, cfg.stale_power
        power, power1 = cfg.power.power, cfg.power.power1
        w = d.regression_window
        _, _, xbar, sxx = d.lr_basis
        inf = np.inf
        n = cand.size
        chunk = max(1, min(16, 2_000_000 // n))  # bounds the re-scoring of touched hosts per VM
        vm_arr = np.asarray(vms, dtype=np.intp)

        # hosts placed on during the current chunk, as Python floats (fast scalar re-scoring):
        # [pe, avail, alloc_sum, req_sum, ram_free, total, hlen, max_ram, lr_m, lr_g, model, htype, p_now]
        state: dict[int, list] = {}
        param, fallback, interval = d.param, d.fallback, d.interval_s

        def score(st: list, r: float, ram: float, vhl: int, vm_m: list, vm_g: list) -> float:
            pe_j, av_j, a, rs_j, rf_j, tot_j, hl_j, mr_j, lm_j, lg_j, mod, t, pn = st
            if not (pe_j >= r and av_j >= r) or (check_ram and rf_j < ram):
                return inf
            if a != 0:
                ru = (rs_j + r) / tot_j
                if not lin:
                    over = ru > param
                elif max(hl_j, vhl) >= w:
                    steps = math.ceil(max(mr_j, ram) / bw / interval)
                    over = (lm_j + vm_m[t] + (lg_j + vm_g[t]) / sxx * (w + steps - xbar)) * param >= 1
                else:
                    over = ru > fallback
                if over:
                    return inf
            u = min((a + r) / tot_j, 1.0)
            if stale:
                return power1(mod, u) - pn
            return power1(mod, u) - (power1(mod, min(a / tot_j, 1.0)) if a != 0 else pn)

        out: list[int] = []
        placed: set[int] = set()
        for c0 in range(0, len(vms), chunk):
            ids = vm_arr[c0 : c0 + chunk]
            R = v.req[ids][:, None]
            RAM = v.ram[ids][:, None]
            ok = (pe >= R) & (av >= R)
            if check_ram:
                ok &= rf >= RAM
            ru = (rs + R) / tot
            if not lin:
                over = ru > d.param
            else:
                t = ht[None, :]
                col = ids[:, None]
                hsteps = np.ceil(mr / bw / d.interval_s)  # ceil is monotone: max of the steps
                vsteps = np.ceil(v.ram[ids] / bw / d.interval_s)[:, None]
                over = d.lr_overloaded_from_steps(
                    lm + self.vm_m[t, col],
                    lg + self.vm_g[t, col],
                    np.maximum(hl, v.vm_hlen[col]),
                    np.maximum(hsteps, vsteps),
                    ru,
                )
            cap_ok = ok.copy()  # capacity only shrinks: a host failing this now fails for good
            ok &= ~(over & (asum != 0))
            u = np.minimum((asum + R) / tot, 1.0)
            D = power(model, u)
            if stale:
                D -= pnow
            else:
                D -= np.where(asum != 0, power(model, np.minimum(asum / tot, 1.0)), pnow)
            D[~ok] = inf
            state.clear()
            D0 = D.copy() if len(ids) > 1 else D  # chunk-start scores (lower bounds once touched)
            reqs, rams = v.req[ids].tolist(), v.ram[ids].tolist()
            vhls = v.vm_hlen[ids].tolist()
            vms_m = self.vm_m[:, ids].T.tolist() if lin else [[]] * len(ids)
            vms_g = self.vm_g[:, ids].T.tolist() if lin else [[]] * len(ids)
            for i in range(len(reqs)):
                r, ram, vhl, vm_m, vm_g = reqs[i], rams[i], vhls[i], vms_m[i], vms_g[i]
                row = D[i]
                if state:  # untouched hosts from the matrix, touched ones re-scored (first index wins ties)
                    orig = D0[i]
                    j = int(np.argmin(row))  # touched hosts' columns are set to inf in D
                    best = float(row[j])
                    cap_row = cap_ok[i]
                    for hj, hst in state.items():
                        if not cap_row[hj]:
                            continue
                        lb = orig[hj]
                        # with the stale power reference a host's score only grows as VMs are
                        # added, so its chunk-start score bounds it from below
                        if stale and lb != inf and (lb > best or (lb == best and hj > j)):
                            continue
                        sc = score(hst, r, ram, vhl, vm_m, vm_g)
                        if sc < best or (sc == best and hj < j):
                            best, j = sc, hj
                else:
                    j = int(np.argmin(row))
                    best = float(row[j])
                if best == inf:
                    if all_or_nothing:
                        return None
                    out.append(-1)
                    continue
                st: list | None = state.get(j)
                if st is None:
                    st = [
                        float(pe[j]),
                        float(av[j]),
                        float(asum[j]),
                        float(rs[j]),
                        float(rf[j]),
                        float(tot[j]),
                        int(hl[j]),
                        float(mr[j]),
                        float(lm[j]) if lin else 0.0,
                        float(lg[j]) if lin else 0.0,
                        int(model[j]),
                        int(ht[j]),
                        float(pnow[j]),
                    ]
                    state[j] = st
                    D[:, j] = inf
                # a suitable VM fits: it gets its (uncapped = capped) request
                st[1] -= r
                st[2] += r
                st[3] += r
                st[4] -= ram
                st[6] = max(st[6], vhl)
                st[7] = max(st[7], ram)
                if lin:
                    st[8] += vm_m[st[11]]
                    st[9] += vm_g[st[11]]
                out.append(int(cand[j]))
            for hj, hst in state.items():  # write the chunk's changes back before the next matrix
                av[hj], asum[hj], rs[hj], rf[hj], hl[hj], mr[hj] = (
                    hst[1],
                    hst[2],
                    hst[3],
                    hst[4],
                    hst[6],
                    hst[7],
                )
                if lin:
                    lm[hj], lg[hj] = hst[8], hst[9]
                placed.add(hj)
        if placed:
            tj = np.fromiter(placed, dtype=np.intp)
            self.F[:, cand[tj]] = G[:, tj]
            for vm, h in zip(vms, out, strict=True):
                if h >= 0:
                    self.lists[h].append(vm)
        return out

    def _place_jit(
        self, vms: list[int], cand: np.ndarray, G: np.ndarray, model: np.ndarray, ht: np.ndarray, aon: bool
    ) -> list[int] | None:
        """The same batch in one compiled call (policies.balancing.kernels)."""
        v, d, cfg = self.v, self.cfg.detector, self.cfg
        _, _, xbar, sxx = d.lr_basis
        mode = {"thr": 0, "lr": 1, "lrr": 1, "iqr": 2, "mad": 3}[d.kind]
        if mode >= 2:
            hist = np.ascontiguousarray(self.hist[cand])
            contrib = v.contrib
        else:
            hist, contrib = self._no_hist, self._no_contrib
        local = np.empty(len(vms), dtype=np.intp)
        classes = None
        if cand.size >= CLASSES_MIN_CANDIDATES:  # e.g. thousands of switched-off hosts: one per class
            empty = G[3] == 0
            if mode >= 2:
                empty &= ~hist.any(axis=1)
            if np.count_nonzero(empty) >= 64:
                classes = kernels.empty_host_classes(G, model, ht, empty)
        done = kernels.run(
            np.asarray(vms, dtype=np.intp), v.req, v.ram, self.vm_hlen_f, self.vm_m, self.vm_g, G,
            np.ascontiguousarray(model, dtype=np.intp), np.ascontiguousarray(ht, dtype=np.intp),
            cfg.power._flat, cfg.power._delta, hist, contrib, mode,
            float(d.param), float(d.fallback), int(d.regression_window), float(xbar), float(sxx),
            float(v.mig_bw_mb_s), float(d.interval_s), bool(v.check_ram), bool(cfg.stale_power), aon, local,
            classes,
        )
        if not done:
            return None
        self.F[:, cand] = G
        if mode >= 2:
            self.hist[cand] = hist
        out = [int(cand[j]) if j >= 0 else -1 for j in local.tolist()]
        for vm, h in zip(vms, out, strict=True):
            if h >= 0:
                self.lists[h].append(vm)
        return out

    def _place_loop(self, vms: list[int], cand: np.ndarray, all_or_nothing: bool) -> list[int] | None:
        """PABFD VM by VM (any detector).

        Works on arrays gathered once for the batch and commits them back at the end, so an
        all-or-nothing batch that fails (returns None) leaves the planner untouched.
        """
        v, d = self.v, self.cfg.detector
        if not cand.size:
            return None if all_or_nothing else [-1] * len(vms)
        tot, pe, model, ht = v.total[cand], v.pe[cand], v.model[cand], v.htype[cand]
        av, asum, rs = self.avail[cand], self.alloc_sum[cand], self.req_sum[cand]
        hl, mr, pnow = self.hlen[cand], self.max_ram[cand], self.p_now[cand]
        rf = self.ram_free[cand]
        hist_mode = 0 if not d.uses_history else (1 if self.linear else 2)
        if hist_mode == 1:
            lm, lg = self.lr_m[cand], self.lr_g[cand]
        elif hist_mode == 2:
            hist = self.hist[cand]
        power = self.cfg.power.power
        bw = v.mig_bw_mb_s
        out: list[int] = []
        touched: list[int] = []
        for vm in vms:
            r = v.req[vm]
            ram = v.ram[vm]
            ok = (pe >= r) & (av >= r)
            if v.check_ram:
                ok &= rf >= ram
            idx = np.flatnonzero(ok)
            j = -1
            if idx.size:
                # rank the suitable hosts by power increase (stable: ties keep host order), then
                # run the (costly) overload-after check lazily, best first, in growing chunks
                a = asum[idx]
                u = np.minimum((a + r) / tot[idx], 1.0)
                diff = power(model[idx], u)
                if self.cfg.stale_power:
                    diff -= pnow[idx]
                else:
                    diff -= np.where(a != 0, power(model[idx], np.minimum(a / tot[idx], 1.0)), pnow[idx])
                rank = idx[np.argsort(diff, kind="stable")]
                lo, size = 0, 4
                while lo < rank.size and j < 0:
                    c = rank[lo : lo + size]
                    lo, size = lo + size, size * 4
                    ac = asum[c]
                    ru = (rs[c] + r) / tot[c]
                    if hist_mode == 0:
                        over = ru > d.param
                    elif hist_mode == 1:
                        t = ht[c]
                        over = d.lr_overloaded_from_parts(
                            lm[c] + self.vm_m[t, vm],
                            lg[c] + self.vm_g[t, vm],
                            np.maximum(hl[c], v.vm_hlen[vm]),
                            np.maximum(mr[c], ram) / bw,
                            ru,
                        )
                    else:
                        over = d.overloaded(
                            ru,
                            hist[c] + v.contrib[ht[c], vm],
                            np.maximum(hl[c], v.vm_hlen[vm]),
                            np.maximum(mr[c], ram) / bw,
                        )[0]
                    fine = np.flatnonzero(~(over & (ac != 0)))
                    if fine.size:
                        j = int(c[fine[0]])
            if j < 0:
                if all_or_nothing:
                    return None
                out.append(-1)
                continue
            asum[j] += r  # a suitable VM fits: it gets its (uncapped = capped) request
            av[j] -= r
            rs[j] += r
            rf[j] -= ram
            if hist_mode:
                hl[j] = max(hl[j], v.vm_hlen[vm])
                if hist_mode == 1:
                    lm[j] += self.vm_m[ht[j], vm]
                    lg[j] += self.vm_g[ht[j], vm]
                else:
                    hist[j] += v.contrib[ht[j], vm]
            mr[j] = max(mr[j], ram)
            out.append(int(cand[j]))
            touched.append(j)
        if touched:
            tj = np.unique(np.asarray(touched))
            hs = cand[tj]
            self.avail[hs], self.alloc_sum[hs], self.req_sum[hs] = av[tj], asum[tj], rs[tj]
            self.ram_free[hs], self.hlen[hs], self.max_ram[hs] = rf[tj], hl[tj], mr[tj]
            if hist_mode == 1:
                self.lr_m[hs], self.lr_g[hs] = lm[tj], lg[tj]
            elif hist_mode == 2:
                self.hist[hs] = hist[tj]
            for vm, h in zip(vms, out, strict=True):
                if h >= 0:
                    self.lists[h].append(vm)
        return out

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
    static = cfg.selector.kind in ("mmt", "mu")  # the key does not change while VMs leave
    for h in over_ids:
        lst = p.lists[h]
        if static and lst:
            idx = np.asarray(lst)
            key = view.ram[idx] if cfg.selector.kind == "mmt" else view.req[idx] / view.mips[idx]
            picks = np.argsort(key, kind="stable")  # = repeated first-minimum picks
            if p.cheap_check and len(lst) > SHED_AT_ONCE_MIN_VMS:  # all the picks at once
                gone = picks[: p.shed_count(int(h), idx, picks)]
                keep = np.ones(idx.size, dtype=bool)
                keep[gone] = False
                lst[:] = idx[keep].tolist()
                r = RULES[rule[h]]
                picked.extend([(vm, int(h), r) for vm in idx[gone].tolist()])
                p.stats_of(int(h), lst)
                continue
            queue = idx[picks].tolist()
        while lst:
            if static:
                vm = queue.pop(0)
                lst.remove(vm)
            else:
                idx = np.asarray(lst)
                k = cfg.selector.pick(
                    view.ram[idx], view.req[idx] / view.mips[idx], view.vm_hist[idx], view.vm_hlen[idx]
                )
                vm = lst.pop(k)
            picked.append((vm, int(h), RULES[rule[h]]))
            p.stats_of(int(h), lst)
            if not p.overloaded_one(int(h)):
                break

    # 3. placement of the selected VMs (PABFD), overloaded hosts excluded
    out: list[Migration] = []
    src_rule = {vm: (s, r) for vm, s, r in picked}
    order = p.by_demand([vm for vm, _, _ in picked])
    dsts = p.place_batch(order, all_hosts[~over], all_or_nothing=False) if order else []
    for vm, dst in zip(order, dsts or [], strict=True):
        if dst >= 0:
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
    nonempty = np.fromiter(map(len, p.lists), dtype=np.intp, count=H) > 0
    sources = np.flatnonzero(~excl_src & (mu > 0) & (mu < 1) & nonempty)
    sources = sources[np.lexsort((sources, mu[sources]))]
    tries = 0
    for h in sources:
        if excl_src[h]:
            continue
        if cfg.underload_limit is not None and tries >= cfg.underload_limit:
            break
        tries += 1
        excl_src[h] = True
        place_ok[h] = False
        vms = p.lists[h]
        if not vms:
            continue
        order = p.by_demand(list(vms))
        dsts = p.place_batch(order, np.flatnonzero(place_ok), all_or_nothing=True)
        if dsts is None:
            continue
        for vm, dst in zip(order, dsts, strict=True):
            excl_src[dst] = True
            out.append(Migration(vm, int(h), dst, RULES[RULE_UNDERLOAD]))
    return out
