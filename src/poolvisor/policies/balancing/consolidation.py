"""Dynamic VM consolidation (Beloglazov & Buyya): overload relief + underload consolidation.

``plan_migrations`` is a pure function of a :class:`PoolView` snapshot: it returns the list of
migrations (each with the rule that fired) and leaves the view untouched. It follows CloudSim
3.0.3's PowerVmAllocationPolicyMigrationAbstract.optimizeAllocation step by step, including the
places where the running plan feeds back into later choices:

1. overloaded hosts (detector), in host order;
2. from each, VMs are taken (selection policy) until it is no longer overloaded;
3. those VMs, by decreasing CPU demand, go to the host with the least power increase (PABFD,
   :mod:`poolvisor.policies.balancing.pabfd`), excluding overloaded hosts (switched-off hosts may
   be woken up);
4. underload: hosts by increasing measured utilization try to move *all* their VMs elsewhere
   (all or nothing), excluding overloaded, switched-off and already tried hosts (optionally at
   most ``PlanConfig.underload_limit`` tries per epoch; not a CloudSim feature).

``place_new`` is PABFD for VMs that have no host yet (the placement at t = 0). Every overload
question the planner asks while it plans goes through one check (:mod:`.overload`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing import kernels, pabfd
from poolvisor.policies.balancing.actions import MIGRATE, Action, Explanation
from poolvisor.policies.balancing.detection import RULE_UNDERLOAD, RULES, Detector
from poolvisor.policies.balancing.overload import GENERAL, IQR, LINEAR, MAD, THR, overloaded, rule_for
from poolvisor.policies.balancing.pabfd import (
    ALLOC,
    AVAIL,
    HLEN,
    LR_G,
    LR_M,
    MAX_RAM,
    N_ROWS,
    P_NOW,
    PE,
    RAM_FREE,
    REQ,
    SLOTS,
    TOTAL,
    VmColumns,
)
from poolvisor.policies.balancing.power import PowerTable
from poolvisor.policies.balancing.selection import Selector


@dataclass
class PoolView:
    """Columnar snapshot of hosts and VMs at a decision epoch (arrays are copied by the planner).

    Hosts: ``total``/``pe`` MIPS, power ``model`` index, history ``htype`` (index into
    ``contrib``), ``measured_u`` (utilization measured at the last update), ``alloc_sum`` (MIPS
    allocated to the VMs in the host's list), ``avail`` (unallocated MIPS), ``req_sum`` (requested
    MIPS), ``ram_free`` (MB, only checked when ``check_ram``), ``hist``/``hlen``/``max_ram``.
    VMs: ``req`` (requested MIPS now), ``mips``, ``ram``, ``vm_hist``/``vm_hlen`` (utilization
    history, newest first), ``contrib[t, v]`` = VM history scaled to a host of history type t.
    ``lists[h]`` is host h's VM list in order; ``slots`` how many more VMs each host may take
    (None: no limit).
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
    slots: np.ndarray | None = None


@dataclass
class PlanConfig:
    """The policy's knobs; the defaults are the paper's algorithm.

    (The simulator's compat configuration, :mod:`poolvisor.sim.compat`, sets these knobs to
    reproduce CloudSim 3.0.3; the policy itself has no CloudSim mode.)
    """

    power: PowerTable
    detector: Detector
    selector: Selector = field(default_factory=Selector)
    #: PABFD measures a host's power increase from its power with the VMs already planned onto it
    #: in this step ("planned"), or from its power measured at the start of the step ("measured").
    power_reference: str = "planned"
    #: what a host with nothing allocated draws before it takes a VM: nothing ("off": it is
    #: switched off, so using it costs its whole power, idle included), or its idle power P(0)
    #: ("idle": waking a sleeping host then looks as cheap as loading an active one).
    empty_host_power: str = "off"
    #: hosts that just received VMs from overloaded hosts are not emptied by the underload phase
    #: of the same step (else a VM can be moved twice in one step).
    spare_relief_targets: bool = True
    #: run the underload phase (move all VMs off the least utilized hosts, all or nothing).
    underload: bool = True
    #: at most this many underloaded hosts are tried per epoch (least utilized first); None: all
    #: of them, as CloudSim and the paper. Each try scans every candidate host for each of its VMs,
    #: so the uncapped search costs O(VMs x hosts) per epoch; a cap bounds it (scale runs).
    underload_limit: int | None = None

    def __post_init__(self) -> None:
        if self.power_reference not in ("planned", "measured"):
            raise InvalidInputError(f"power_reference: 'planned' or 'measured', not {self.power_reference!r}")
        if self.empty_host_power not in ("off", "idle"):
            raise InvalidInputError(f"empty_host_power: 'off' or 'idle', not {self.empty_host_power!r}")


#: hosts with more VMs than this shed them in one compiled pass (:meth:`_Planner.shed_count`)
SHED_AT_ONCE_MIN_VMS = 8
#: batches over at least this many candidates (with 64 empty ones) scan one empty host per class
CLASSES_MIN_CANDIDATES = 256


class _Planner:
    """The planning state of one epoch: the view's host sums as rows (pabfd's names), the host
    lists, and the overload rule; :meth:`place_batch` runs PABFD on it."""

    def __init__(self, view: PoolView, cfg: PlanConfig) -> None:
        self.v = view
        self.cfg = cfg
        d = cfg.detector
        self.rule = rule_for(d, view.hist.shape[1], view.mig_bw_mb_s)
        self.linear = self.rule.mode == LINEAR
        self.cheap_check = self.rule.mode in (THR, LINEAR)  # scalar arithmetic, no history sort
        self.measured = cfg.power_reference == "measured"
        H = view.total.size
        F = np.zeros((N_ROWS, H))
        F[TOTAL], F[PE], F[AVAIL], F[ALLOC] = view.total, view.pe, view.avail, view.alloc_sum
        F[REQ], F[RAM_FREE], F[HLEN], F[MAX_RAM] = view.req_sum, view.ram_free, view.hlen, view.max_ram
        F[SLOTS] = np.inf if view.slots is None else view.slots
        F[P_NOW] = cfg.power.power(view.model, np.minimum(view.measured_u, 1.0))
        if cfg.empty_host_power == "off":  # P_NOW is only read for empty hosts unless measured
            F[P_NOW] = np.where(view.measured_u == 0, 0.0, F[P_NOW]) if self.measured else 0.0
        if self.linear:
            F[LR_M], F[LR_G] = d.lr_parts(view.hist)
            vm_m, vm_g = d.lr_parts(view.contrib)  # (T, V)
        else:
            vm_m = vm_g = np.zeros((0, 0))
        self.F = F
        self.avail, self.alloc_sum, self.req_sum, self.ram_free = F[AVAIL], F[ALLOC], F[REQ], F[RAM_FREE]
        self.hlen, self.max_ram, self.lr_m, self.lr_g = F[HLEN], F[MAX_RAM], F[LR_M], F[LR_G]
        self.vm = VmColumns(
            req=view.req, settled=view.req, ram=view.ram, hlen=view.vm_hlen.astype(np.float64),
            lr_m=vm_m, lr_g=vm_g, contrib=view.contrib,
        )  # fmt: skip
        self.hist = view.hist.copy()
        self.model = np.ascontiguousarray(view.model, dtype=np.intp)
        self.htype = np.ascontiguousarray(view.htype, dtype=np.intp)
        self.lists = [list(lst) for lst in view.lists]
        self.req_l, self.ram_l, self.vm_hlen_l = view.req.tolist(), view.ram.tolist(), view.vm_hlen.tolist()
        self.vm_m_l, self.vm_g_l = vm_m.tolist(), vm_g.tolist()
        sortable = self.rule.mode in (IQR, MAD) and view.contrib.flags.c_contiguous
        self.jit = (self.cheap_check or sortable) and kernels.available()
        self._no_hist = np.zeros((1, 1))

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
                self.lr_m[h] = float(np.cumsum(self.vm.lr_m[t, idx])[-1])
                self.lr_g[h] = float(np.cumsum(self.vm.lr_g[t, idx])[-1])
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

    def overloaded_one(self, h: int) -> bool:
        """The overload check (overload.overloaded) of host h with its planned sums."""
        rule, d = self.rule, self.cfg.detector
        ru = self.req_sum[h] / self.v.total[h]
        if self.cheap_check:  # on scalars
            lr_m, lr_g = self.lr_m[h], self.lr_g[h]
            return bool(overloaded(rule, d, ru, self.hlen[h], self.max_ram[h], lr_m, lr_g, None))
        hs = [h]
        over = overloaded(rule, d, np.array([ru]), self.hlen[hs], self.max_ram[hs], None, None, self.hist[hs])
        return bool(over[0])

    def shed_count(self, h: int, idx: np.ndarray, order: np.ndarray) -> int:
        """How many VMs leave host h (list ``idx``) when they leave in ``order`` (list positions),
        each time until the host is no longer overloaded: the fewest after which
        :meth:`overloaded_one` is False (all of them if it never is). Under THR or LR in one
        compiled pass when numba is available (kernels.shed: the same sums in list order);
        otherwise VM by VM. Host h's sums are left undefined: callers recompute them."""
        n = idx.size
        if self.jit and self.cheap_check:
            rank = np.empty(n, dtype=np.intp)
            rank[order] = np.arange(n)
            vm = self.vm
            vm_m, vm_g = (vm.lr_m, vm.lr_g) if self.linear else (self._no_hist, self._no_hist)
            t, total = int(self.v.htype[h]), float(self.v.total[h])
            return kernels.run_shed(idx, rank, vm.req, vm.ram, vm.hlen, vm_m, vm_g, t, total, self.rule)
        left = idx.tolist()
        for k, vm_id in enumerate(idx[order[: n - 1]].tolist()):
            left.remove(vm_id)
            self.stats_of(h, left)
            if not self.overloaded_one(h):
                return k + 1
        return n

    def detect(self, hs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The detector on hosts hs at the start of the epoch (measured histories): mask and rule."""
        d = self.cfg.detector
        ru = self.req_sum[hs] / self.v.total[hs]
        if not d.uses_history:
            return d.overloaded(ru)
        return d.overloaded(ru, self.hist[hs], self.hlen[hs], self.max_ram[hs] / self.v.mig_bw_mb_s)

    # --- PABFD ---------------------------------------------------------------------------
    def place_batch(self, vms: list[int], cand: np.ndarray, all_or_nothing: bool) -> list[int] | None:
        """PABFD for ``vms`` in order over hosts ``cand`` (ascending); returns each VM's host (-1:
        none), or None if an ``all_or_nothing`` batch fails, leaving the planner untouched.

        Runs :func:`pabfd.place`, or its compiled twin ``kernels.place`` when numba is available
        and the rule is compiled (THR, LINEAR, IQR, MAD), on a gathered copy of the candidates'
        rows, committed back when the batch is done.
        """
        v, F = self.v, self.F
        vm_arr = np.asarray(vms, dtype=np.intp)
        # hosts that cannot take even the smallest VM of the batch never will (capacity only shrinks)
        rmin = float(v.req[vm_arr].min()) if vm_arr.size else 0.0
        keep = (F[PE, cand] >= rmin) & (F[AVAIL, cand] >= rmin) & (F[SLOTS, cand] >= 1)
        if v.check_ram and vm_arr.size:
            keep &= F[RAM_FREE, cand] >= float(v.ram[vm_arr].min())
        cand = cand[keep]
        if not cand.size:
            return None if all_or_nothing else [-1] * len(vms)
        rows = F.take(cand, axis=1)  # a C-contiguous copy (F[:, cand] is Fortran-ordered): one signature
        model, ht = self.model[cand], self.htype[cand]
        with_hist = self.rule.mode in (IQR, MAD, GENERAL)
        hist = np.ascontiguousarray(self.hist[cand]) if with_hist else self._no_hist
        if self.jit:
            classes = None
            if cand.size >= CLASSES_MIN_CANDIDATES:  # e.g. thousands of switched-off hosts: one per class
                empty = rows[ALLOC] == 0
                if with_hist:
                    empty &= ~hist.any(axis=1)
                if np.count_nonzero(empty) >= 64:
                    classes = kernels.empty_host_classes(rows, model, ht, empty)
            power = self.cfg.power
            local = kernels.place(
                vm_arr, self.vm, rows, model, ht, hist, self.rule, power._flat, power._delta,
                v.check_ram, self.measured, all_or_nothing, classes,
            )  # fmt: skip
        else:
            local = pabfd.place(
                vm_arr, self.vm, rows, model, ht, hist, self.rule, self.cfg.detector, self.cfg.power,
                v.check_ram, self.measured, all_or_nothing,
            )  # fmt: skip
        if local is None:
            return None
        F[:, cand] = rows
        if with_hist:
            self.hist[cand] = hist
        out = [int(cand[j]) if j >= 0 else -1 for j in local.tolist()]
        for vm, h in zip(vms, out, strict=True):
            if h >= 0:
                self.lists[h].append(vm)
        return out

    def by_demand(self, vms: list[int]) -> list[int]:
        """Decreasing requested MIPS, stable (CloudSim PowerVmList.sortByCpuUtilization)."""
        req = self.v.req[vms]
        return [vms[i] for i in np.argsort(-req, kind="stable")]


def migration_action(mu: list[float], req: list[float], vm: int, src: int, dst: int, rule: str,
               candidates: int) -> Action:
    """A planned migration with what it was decided on (``mu``: utilizations measured at the
    epoch, ``req``: the workloads' requests, as lists: this runs once per migration)."""
    figures = {"src_util": mu[src], "dst_util": mu[dst], "requested": req[vm],
               "candidates": float(candidates)}
    return Action(MIGRATE, vm, src, dst, Explanation(rule, figures))


def plan_migrations(view: PoolView, cfg: PlanConfig) -> list[Action]:
    """The migrations CloudSim's optimizeAllocation would start at this epoch (see module doc),
    as actions whose rule is the detector's (or ``underload``); figures: the source's and the
    destination's measured utilization, the workload's request, how many hosts PABFD weighed."""
    p = _Planner(view, cfg)
    H = view.total.size
    all_hosts = np.arange(H)
    over, rule = p.detect(all_hosts)
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
            if p.cheap_check and len(lst) > SHED_AT_ONCE_MIN_VMS:  # long lists: all the picks at once
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
                    view.ram[idx], view.req[idx] / view.mips[idx], view.vm_hist[idx], view.vm_hlen[idx],
                    view.mips[idx],
                )
                vm = lst.pop(k)
            picked.append((vm, int(h), RULES[rule[h]]))
            p.stats_of(int(h), lst)
            if not p.overloaded_one(int(h)):
                break

    # 3. placement of the selected VMs (PABFD), overloaded hosts excluded
    out: list[Action] = []
    mu_l = view.measured_u.tolist()
    src_rule = {vm: (s, r) for vm, s, r in picked}
    order = p.by_demand([vm for vm, _, _ in picked])
    targets = all_hosts[~over]
    dsts = p.place_batch(order, targets, all_or_nothing=False) if order else []
    for vm, dst in zip(order, dsts or [], strict=True):
        if dst >= 0:
            s, r = src_rule[vm]
            out.append(migration_action(mu_l, p.req_l, vm, s, dst, r, targets.size))
    if not cfg.underload:
        return out

    # 4. underload consolidation, all or nothing per host
    switched_off = view.measured_u == 0
    excl_src = over | switched_off
    place_ok = ~(over | switched_off)
    if cfg.spare_relief_targets:
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
        targets = np.flatnonzero(place_ok)
        dsts = p.place_batch(order, targets, all_or_nothing=True)
        if dsts is None:
            continue
        for vm, dst in zip(order, dsts, strict=True):
            excl_src[dst] = True
            out.append(migration_action(mu_l, p.req_l, vm, int(h), dst, RULES[RULE_UNDERLOAD], targets.size))
    return out


def place_new(view: PoolView, cfg: PlanConfig, settled_req: np.ndarray | None = None) -> np.ndarray:
    """PABFD placement of every VM of the view, in VM order, onto its hosts (the initial
    placement). Returns each VM's host, -1 for a VM that fits nowhere. ``settled_req``: what a VM
    counts as requesting, in later overload checks, once placed (default: its request)."""
    p = _Planner(view, cfg)
    if settled_req is not None:
        p.vm = p.vm._replace(settled=np.ascontiguousarray(settled_req, dtype=np.float64))
    out = p.place_batch(list(range(view.req.size)), np.arange(view.total.size), all_or_nothing=False)
    return np.asarray(out, dtype=np.intp)
