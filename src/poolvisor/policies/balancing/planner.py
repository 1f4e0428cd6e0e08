"""The balancing planner: one entry point for the live pool and the simulators.

``plan_balancing(view, policy)`` answers, for one instant of one pool (a :class:`BalancingView`
over a ClusterState and its workload table), which migrations to start and which hosts to switch
on or off, each action with its explanation (:mod:`.actions`). The policy is one of:

* :class:`PabfdPolicy` (``thr-mmt``, ``lr-mmt``, ...: Beloglazov & Buyya): overload relief (a
  detector on the hosts' measured CPU, a selector for the workloads that leave, PABFD for where
  they go), then underload consolidation (the least utilized hosts are emptied, all or nothing);
* :class:`AdaptivePolicy` (``adaptive``, the default of ``simulate planetlab``: :mod:`.adaptive`):
  the same pieces with a hysteresis band between relieving a host and accepting a workload,
  shedding only to the trigger, cheapest evacuations first, a payback horizon;
* :class:`PackPolicy` (``pack``): underload consolidation by bin packing of the workloads'
  reserved demands (every resource), hosts cheapest to empty first, with a migration cost;
* :class:`SpreadPolicy` (``spread``): imbalance reduction: the workloads of hosts whose CPU
  utilization is far above the pool's mean move to the least utilized hosts.

The PlanetLab simulator calls it at every decision epoch, and the live pool's consolidation plan
(``POST /v1/pools/{name}/consolidation-plan``) calls it with the policy the request names (``pack``
by default). ``plan_recovery(view, failed, policy)`` restarts the workloads of failed hosts.
CloudSim's quirks are not policy knobs here: the simulator's compat configuration
(:mod:`poolvisor.sim.compat`) sets the policy's plain knobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.actions import (
    MIGRATE,
    POWER_OFF,
    POWER_ON,
    RESTART,
    Action,
    Actions,
    Explanation,
)
from poolvisor.policies.balancing.adaptive import ADAPTIVE, AdaptiveConfig, plan_adaptive
from poolvisor.policies.balancing.consolidation import PlanConfig, _Planner, place_new, plan_migrations
from poolvisor.policies.balancing.detection import Detector
from poolvisor.policies.balancing.power import PowerTable
from poolvisor.policies.balancing.selection import SELECTORS, Selector
from poolvisor.policies.balancing.soft import describe, soft_penalty
from poolvisor.policies.balancing.view import BalancingView, pool_view
from poolvisor.policies.packing.consolidate import fit_into, plan_consolidation

#: each detector's parameter when the policy name gives none (the paper's)
DEFAULT_PARAMS = {"thr": 0.8, "iqr": 1.5, "mad": 2.5, "lr": 1.2, "lrr": 1.2}
#: the static threshold history-based detectors use while a host's history is too short
FALLBACK_THRESHOLD = 0.7


@dataclass(frozen=True)
class PabfdPolicy:
    """Detector + selector + PABFD with the knobs of ``config`` (:class:`PlanConfig`); at most
    ``max_migrations`` (the first ones planned: each is feasible after those before it)."""

    config: PlanConfig
    name: str = "pabfd"
    max_migrations: int | None = None


@dataclass(frozen=True)
class AdaptivePolicy(PabfdPolicy):
    """The adaptive policy (:func:`~poolvisor.policies.balancing.adaptive.plan_adaptive`):
    ``config.detector`` is its acceptance check (LR with a safety margin), ``adaptive`` its knobs.
    A PABFD policy otherwise: initial placement and recovery are PABFD's."""

    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)


@dataclass(frozen=True)
class PackPolicy:
    """Fewest active hosts by packing reservations: a host is emptied when all its workloads fit
    on hosts that stay active and their summed ``migration_cost`` is below ``host_value``."""

    migration_cost: float = 0.1
    host_value: float = 1.0
    max_migrations: int | None = None
    name: str = "pack"


@dataclass(frozen=True)
class SpreadPolicy:
    """Imbalance reduction: while a host's CPU utilization exceeds the pool's mean by more than
    ``max_gap``, its smallest workload that narrows the gap moves to the least utilized host
    that can take it (at most ``max_migrations``)."""

    max_gap: float = 0.2
    max_migrations: int | None = None
    name: str = "spread"
    #: utilization a destination is charged per soft group rule pair the move breaks (soft.py):
    #: a host that keeps the rule wins unless it is this much busier per pair
    soft_weight: float = 0.25


Policy = PabfdPolicy | PackPolicy | SpreadPolicy
POLICY_NAMES = ("pack", "spread", "adaptive[-param]", "<thr|iqr|mad|lr|lrr>-<mmt|mu|mc|rs|lp>[-param]")


def policy_named(name: str, *, power: PowerTable, interval_s: float = 300.0, seed: int = 0,
                 max_migrations: int | None = None, weighted_regression: bool = True) -> Policy:
    """A policy by name: ``pack``, ``spread``, ``adaptive[-param]`` (LR forecast with safety
    ``param``, 1.2 by default, MMT selection) or ``<detector>-<selector>[-param]`` (the paper's
    knobs: what the simulator's default mode runs)."""
    p = name.strip().lower()
    if p == "pack":
        return PackPolicy(max_migrations=max_migrations)
    if p == "spread":
        return SpreadPolicy(max_migrations=max_migrations)
    parts = p.split("-")
    param: float | None = None
    if parts[0] == ADAPTIVE and len(parts) <= 2:  # "adaptive" or "adaptive-1.2"
        return _adaptive(name, parts[1:], power, interval_s, seed, max_migrations, weighted_regression)
    if len(parts) == 3:
        try:
            param = float(parts[2])
        except ValueError:
            raise InvalidInputError(f"bad policy parameter in {name!r}") from None
        parts = parts[:2]
    if len(parts) != 2 or parts[0] not in DEFAULT_PARAMS or parts[1] not in SELECTORS:
        raise InvalidInputError(f"unknown balancing policy {name!r}: use {', '.join(POLICY_NAMES)}")
    detector = Detector(parts[0], DEFAULT_PARAMS[parts[0]] if param is None else param,
                        weighted=weighted_regression, fallback=FALLBACK_THRESHOLD, interval_s=interval_s)
    cfg = PlanConfig(power=power, detector=detector, selector=Selector(parts[1], seed=seed))
    return PabfdPolicy(cfg, p, max_migrations)


def _adaptive(name: str, param: list[str], power: PowerTable, interval_s: float, seed: int,
              max_migrations: int | None, weighted_regression: bool) -> AdaptivePolicy:
    """``adaptive[-safety]``: the LR forecast (safety 1.2 by default, at least the trigger's 1)
    as the acceptance check, MMT selection, the adaptive knobs' defaults."""
    try:
        safety = float(param[0]) if param else DEFAULT_PARAMS["lr"]
    except ValueError:
        raise InvalidInputError(f"bad policy parameter in {name!r}") from None
    if not safety >= AdaptiveConfig().trigger_safety:
        raise InvalidInputError(f"adaptive: the safety parameter must be >= 1 (not {safety:g})")
    detector = Detector("lr", safety, weighted=weighted_regression, fallback=FALLBACK_THRESHOLD,
                        interval_s=interval_s)
    cfg = PlanConfig(power=power, detector=detector, selector=Selector("mmt", seed=seed))
    return AdaptivePolicy(cfg, name.strip().lower(), max_migrations)


# ---- balancing -----------------------------------------------------------------------------------
def plan_balancing(view: BalancingView, policy: Policy, *, power: bool = True) -> Actions:
    """The actions ``policy`` takes at this instant (module doc): migrations in the order they
    start, then (``power``) the hosts switched on (empty hosts that receive a workload) and off
    (hosts left empty). The PlanetLab simulator asks for no power actions: in its model a host
    is off exactly while it runs nothing."""
    if isinstance(policy, PabfdPolicy):
        pv = pool_view(view, policy.config.detector.uses_history)
        if isinstance(policy, AdaptivePolicy):
            acts = Actions(plan_adaptive(pv, policy.config, policy.adaptive))
        else:
            acts = Actions(plan_migrations(pv, policy.config))
        cap = policy.max_migrations
        if cap is not None and len(acts) > cap:
            why = f"{len(acts) - cap} more migration(s) planned, beyond the cap of {cap}"
            acts = Actions(acts[:cap], [why])
    elif isinstance(policy, PackPolicy):
        acts = _pack(view, policy)
    elif isinstance(policy, SpreadPolicy):
        acts = _spread(view, policy)
    else:
        raise InvalidInputError(f"unknown balancing policy {policy!r}")
    return _with_power(view, acts) if power else acts


def plan_initial(view: BalancingView, policy: PabfdPolicy, settled_req: np.ndarray | None = None
                 ) -> np.ndarray:
    """PABFD placement of every workload of the view in row order (hosts; -1: fits nowhere)."""
    return place_new(pool_view(view, False), policy.config, settled_req)


def _with_power(view: BalancingView, acts: Actions) -> Actions:
    """Append power_on for empty hosts that receive a workload and power_off for hosts the
    migrations leave empty (in host order)."""
    moves = [a for a in acts if a.kind in (MIGRATE, RESTART)]
    if not moves:
        return acts
    host = view.state.workloads.host
    count = np.bincount(host[host >= 0], minlength=view.state.n)
    src = np.fromiter((a.src for a in moves), dtype=np.int64, count=len(moves))
    dst = np.fromiter((a.dst for a in moves), dtype=np.int64, count=len(moves))
    after = count - np.bincount(src[src >= 0], minlength=count.size) + np.bincount(dst, minlength=count.size)
    for h in np.unique(dst[count[dst] == 0]).tolist():
        acts.append(Action(POWER_ON, -1, -1, h, Explanation("host receives workloads while empty")))
    src = src[src >= 0]
    for h in np.unique(src[(after[src] == 0) & (count[src] > 0)]).tolist():
        acts.append(Action(POWER_OFF, -1, h, -1, Explanation("host left without workloads",
                                                             {"workloads_before": float(count[h])})))
    return acts


def _placed(view: BalancingView) -> tuple[np.ndarray, np.ndarray]:
    t = view.state.workloads
    rows = np.flatnonzero(t.host >= 0)
    return rows, t.host[rows]


def _pack(view: BalancingView, policy: PackPolicy) -> Actions:
    st = view.state
    rows, cur = _placed(view)
    names = [str(st.workloads.keys[r]) for r in rows.tolist()]
    plan = plan_consolidation(st, names, st.workloads.demand[:, rows].T, cur.tolist(),
                              migration_cost=policy.migration_cost, host_value=policy.host_value,
                              max_migrations=policy.max_migrations)
    acts = [Action(a.kind, int(rows[a.workload]), a.src, a.dst, a.explanation) for a in plan.moves]
    return Actions(acts, plan.notes)


def _spread(view: BalancingView, policy: SpreadPolicy) -> Actions:
    st = view.state
    t = st.workloads
    total = view.total()
    req = view.request()
    up = st.up & (total > 0)
    rows, cur = _placed(view)
    load = np.bincount(cur, req[rows], st.n)
    alloc = st.allocated.copy()
    cap = st.capacity
    acts = Actions()
    budget = np.inf if policy.max_migrations is None else policy.max_migrations
    host = t.host.copy()
    groups = st.copy() if view.soft else st  # soft rules are weighed on the members as moved
    while len(acts) < budget:
        u = np.where(up, load / np.where(total > 0, total, 1.0), 0.0)
        mean = float(u[up].mean()) if up.any() else 0.0
        src = int(np.argmax(np.where(up, u, -np.inf)))
        if not up.any() or u[src] - mean <= policy.max_gap:
            break
        done = False
        mine = np.flatnonzero(host == src)
        for r in mine[np.argsort(req[mine], kind="stable")].tolist():
            fits = up & np.all(alloc + t.demand[:, r, None] <= cap + 1e-9, axis=0)
            fits[src] = False
            cand = np.flatnonzero(fits & (u + req[r] / np.where(total > 0, total, 1.0) < u[src]))
            if not cand.size:
                continue
            rule = view.soft.get(r) if view.soft else None
            pen = soft_penalty(groups, rule, src, cand)
            score = u[cand] + policy.soft_weight * np.maximum(pen, 0.0)
            best = int(np.argmin(score))  # the first of the least utilized, soft rules weighed
            dst = int(cand[best])
            figures = {"src_util": float(u[src]), "dst_util": float(u[dst]), "mean_util": mean,
                       "max_gap": policy.max_gap}
            order = np.argsort(score, kind="stable")
            alts = tuple(f"{st.names[h]} at {u[h]:.2f}" + (f" (soft penalty {p:g})" if p > 0 else "")
                         for h, p in zip(cand[order][1:4].tolist(), pen[order][1:4].tolist(), strict=True))
            if rule is not None:
                figures["soft_penalty"] = float(pen[best])
                if pen[best] > 0:  # no host keeps the rule and narrows the gap: bent, and said so
                    alts = (f"bends {describe(rule, float(pen[best]))}", *alts)
            acts.append(Action(MIGRATE, r, src, dst, Explanation("imbalance", figures, alts)))
            load[src] -= req[r]
            load[dst] += req[r]
            alloc[:, src] -= t.demand[:, r]
            alloc[:, dst] += t.demand[:, r]
            host[r] = dst
            if rule is not None and rule[0] in groups.group_counts:
                groups.group_counts[rule[0]][src] -= 1
                groups.group_counts[rule[0]][dst] += 1
            done = True
            break
        if not done:
            acts.notes.append(f"{st.names[src]} stays {u[src] - mean:.2f} above the mean: none of its "
                              "workloads narrows the gap on a host that can take it")
            break
    return acts


# ---- recovery ------------------------------------------------------------------------------------
def plan_recovery(view: BalancingView, failed: Sequence[int], policy: Policy) -> Actions:
    """Restart the workloads of the ``failed`` hosts elsewhere: PABFD (largest first, least power
    increase) for a PABFD policy, else packed onto the surviving UP hosts by their reservations
    (every resource); a workload that fits nowhere gets an action with no destination. Hosts
    switched off that take workloads are switched on first (power_on actions lead)."""
    st = view.state
    t = st.workloads
    dead = np.zeros(st.n, dtype=bool)
    dead[np.asarray(failed, dtype=np.int64)] = True
    victims = np.flatnonzero((t.host >= 0) & dead[np.maximum(t.host, 0)])
    if not victims.size:
        return Actions()
    alive = st.up & ~dead
    if isinstance(policy, PabfdPolicy):
        dst = _pabfd_restart(view, policy, victims, alive)
        rule = "restart: PABFD (least power increase)"
    else:
        free = (st.capacity - st.allocated)[:, alive].T
        scale = np.where(st.capacity.max(axis=1) > 0, st.capacity.max(axis=1), 1.0)
        sub = fit_into(t.demand[:, victims].T, free, scale)
        hosts = np.flatnonzero(alive)
        dst = np.where(sub >= 0, hosts[np.maximum(sub, 0)], -1)
        rule = "restart: packed onto the surviving hosts"
    empty = np.bincount(t.host[t.host >= 0], minlength=st.n) == 0
    acts = Actions()
    for h in sorted({int(d) for d in dst if d >= 0 and empty[d]}):
        acts.append(Action(POWER_ON, -1, -1, h, Explanation("host takes restarted workloads while empty")))
    for r, d in zip(victims.tolist(), dst.tolist(), strict=True):
        why = Explanation(rule if d >= 0 else "restart: no surviving host can take it",
                          {"failed_host": float(t.host[r])}, ())
        acts.append(Action(RESTART, r, int(t.host[r]), int(d), why))
    return acts


def _pabfd_restart(view: BalancingView, policy: PabfdPolicy, victims: np.ndarray, alive: np.ndarray
                   ) -> np.ndarray:
    """PABFD over the surviving hosts for the victims, biggest request first."""
    pv = pool_view(view, False)
    order = victims[np.argsort(-pv.req[victims], kind="stable")]
    slots = np.where(alive, np.inf if pv.slots is None else pv.slots, 0.0)
    pv.slots = slots
    p = _Planner(pv, policy.config)
    got = p.place_batch(order.tolist(), np.flatnonzero(alive), all_or_nothing=False) or []
    dst = np.full(victims.size, -1, dtype=np.int64)
    pos = {int(v): i for i, v in enumerate(victims.tolist())}
    for v, d in zip(order.tolist(), got, strict=True):
        dst[pos[v]] = d
    return dst

