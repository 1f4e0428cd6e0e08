"""The packing engine applied to a pool's ClusterState: batch placement and consolidation planning.

plan_consolidation is the "pack" policy of the balancing planner
(:func:`poolvisor.policies.balancing.planner.plan_balancing`), which is what the live pool's
consolidation plan calls; plan_batch_placement serves batch creation.

Both are pure functions of a ClusterState (never mutated) that return plans with explanations.
Hosts are bins of different sizes, partially filled: a host's bin is its current free capacity
(capacity x overcommit - allocated), and only UP hosts (optionally a subset) take workloads.

* plan_batch_placement: place many workloads at once, preferring hosts that are already active,
  then opening as few empty hosts as possible (largest first); then tries to empty each newly
  opened host again by re-packing its workloads into the other chosen hosts.
* plan_consolidation: fewest active hosts with a migration cost: hosts are emptied one at a time,
  cheapest to empty first (fewest / smallest workloads), only when their workloads all fit on the
  hosts that stay active and the migration cost is below the value of freeing a host. Workloads on
  hosts that stay active never move.

Hosts differ in size by up to 15 orders of magnitude, so feasibility is always per host, in the
units the ledger claims in: a workload fits a host when its demand is at most that host's free
capacity plus half the ledger's absolute slack (CLAIM_EPS), never a slack relative to some common
bin. One common scale (the largest host) only orders and scores items. Before a plan is returned
it is replayed the way the ledger will claim it (in workload order, the same float sums): a claim
that would still fail (rounding on huge hosts) is re-homed or left where it is (_settle), and the
result is checked (_verify); a failure there is an InfeasiblePackingError (a bug, never the
caller's fault: the services log it and fall back to a safe plan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.actions import MIGRATE, PLACE, Action, Explanation
from poolvisor.policies.packing.bincentric import bin_centric
from poolvisor.policies.packing.feasibility import InfeasiblePackingError
from poolvisor.policies.packing.greedy import item_centric
from poolvisor.state.cluster import ClusterState

REPACK_ATTEMPTS = 8
NO_ROOM = "no eligible host has enough free capacity left"
CLAIM_EPS = 1e-9  # absolute slack of ClusterState.allocate and of the ledger's capacity UPDATE


def _reference(state: ClusterState) -> np.ndarray:
    """Per-resource unit for ordering and scoring items: the largest host capacity (1 where none has
    any). Never used for feasibility: hosts are checked against their own capacity."""
    cap = state.capacity.max(axis=1) if state.n else np.ones(len(state.resources))
    return np.where(cap > 0, cap, 1.0)


def fit_into(demands: np.ndarray, residual: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Pack demands (n, R) into fixed bins with residual capacities (k, R); -1 = did not fit.

    Feasibility is per bin: an item fits while its demand is at most the bin's residual plus
    CLAIM_EPS/2 (absolute: `scale` only orders and scores). Runs the engine's heuristics with
    fixed bins (no new bins) and keeps the assignment with the fewest unplaced items, then the
    fewest bins touched, then the lowest bin indices (callers order bins by preference). The
    bin-centric ones walk the bins one by one, so they only run when there are enough items to
    fill bins (not for re-homing a handful of workloads).
    """
    n = demands.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if residual.shape[0] == 0:
        return np.full(n, -1, dtype=np.int64)
    res = np.maximum(residual, 0.0)
    items = partial(item_centric, demands, scale, bins_residual=res, allow_new=False, tol=CLAIM_EPS / 2)
    bins = partial(bin_centric, demands, scale, bins_residual=res, allow_new=False, tol=CLAIM_EPS / 2)
    candidates = [
        items(order="decreasing", rule="first", measure="l2"),
        items(order="decreasing", rule="best", measure="linf"),
    ]
    if n >= 8:
        candidates += [
            items(order="dynamic", rule="best"),
            bins(score="dot", dynamic=True),
            bins(score="l2", dynamic=True),
        ]

    def key(a: np.ndarray) -> tuple[int, int, int]:
        used = np.unique(a[a >= 0])
        return int(np.sum(a < 0)), int(used.size), int(used.sum())

    return min(candidates, key=key)


def move(kind: str, i: int, src: int, dst: int, reason: str, **figures: float) -> Action:
    """One workload's line of a plan (workload i of the plan's list; hosts by state index)."""
    return Action(kind, i, src, dst, Explanation(reason, figures))


@dataclass
class Plan:
    """What to do and why. `assignment[i]` is the host index for workload i (-1 = not placed);
    `moves` one action per workload that is placed (from nowhere) or migrated, in workload order;
    `workloads` and `hosts` the names they refer to."""

    kind: str
    assignment: np.ndarray
    moves: list[Action]
    hosts_before: int
    hosts_after: int
    lower_bound: int
    summary: str
    notes: list[str] = field(default_factory=list)
    workloads: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    @property
    def unplaced(self) -> list[str]:
        return [self.workloads[m.workload] for m in self.moves if m.dst < 0]

    def reasons(self) -> dict[str, str]:
        return {self.workloads[m.workload]: m.rule for m in self.moves}

    def move_dict(self, m: Action) -> dict[str, Any]:
        d = m.to_dict(self.workloads, self.hosts)
        d["reason"] = d.pop("rule")
        return d

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary, "hosts_before": self.hosts_before,
                "hosts_after": self.hosts_after, "lower_bound": self.lower_bound,
                "moves": [self.move_dict(m) for m in self.moves], "notes": list(self.notes)}


def _eligible(state: ClusterState, allowed: np.ndarray | None) -> np.ndarray:
    ok = state.up & np.all(state.capacity >= 0, axis=0)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (state.n,):
            raise InvalidInputError(f"allowed must be a bool mask over the {state.n} hosts")
        ok &= allowed
    return ok


def _check_demands(state: ClusterState, names: Sequence[str], demands: Any) -> np.ndarray:
    d = np.asarray(demands, dtype=np.float64).reshape(len(names), len(state.resources))
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise InvalidInputError("demands must be finite and >= 0")
    if len(set(names)) != len(names):
        raise InvalidInputError("workload names must be unique")
    return d


def host_lower_bound(demands: np.ndarray, state: ClusterState, hosts: np.ndarray) -> int:
    """Hosts needed at least: total demand over the largest eligible host capacity, per resource."""
    if demands.shape[0] == 0 or hosts.size == 0:
        return 0
    big = state.capacity[:, hosts].max(axis=1)
    tot = demands.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.ceil(tot / np.where(big > 0, big, 1.0) - 1e-9)
        need = np.where(big > 0, ratio, np.where(tot > 0, np.inf, 0))
    lb = float(np.max(need)) if need.size else 0.0
    return int(min(lb, hosts.size)) if np.isfinite(lb) else hosts.size


def plan_batch_placement(
    state: ClusterState,
    names: Sequence[str],
    demands: Any,
    *,
    allowed: np.ndarray | None = None,
) -> Plan:
    """Place workloads (names, demands (n, R)) at once onto the hosts' free capacity."""
    d = _check_demands(state, names, demands)
    hosts = np.flatnonzero(_eligible(state, allowed))
    free = state.free[:, hosts].T  # (k, R)
    active = state.workload_count[hosts] > 0
    scale = _reference(state)
    # preference: active hosts (tightest first), then empty hosts, largest first
    fill = (free / scale).sum(axis=1)
    size = (state.capacity[:, hosts].T / scale).sum(axis=1)
    order = np.lexsort((np.arange(hosts.size), np.where(active, fill, -size), ~active))
    a = fit_into(d, free[order], scale)
    notes: list[str] = []
    # try to close newly opened hosts again, the least loaded first (a bounded number of attempts):
    # their workloads onto the other used hosts
    bins_free = free[order].copy()
    np.subtract.at(bins_free, a[a >= 0], d[a >= 0])
    opened_bins = [int(x) for x in np.unique(a[a >= 0]) if not active[order[x]]]
    load_of = {b: float((d[a == b] / scale).sum()) for b in opened_bins}
    for b in sorted(opened_bins, key=lambda x: load_of[x])[:REPACK_ATTEMPTS]:
        movers = np.flatnonzero(a == b)
        # bins are in preference order: bin x is host hosts[order[x]]
        others = np.array([x for x in np.unique(a[a >= 0]) if x != b] +
                          [x for x in np.flatnonzero(active[order]) if x not in a], dtype=np.int64)
        if others.size == 0:
            continue
        sub = fit_into(d[movers], bins_free[others], scale)
        if np.all(sub >= 0):
            a[movers] = others[sub]
            np.subtract.at(bins_free, others[sub], d[movers])
            bins_free[b] += d[movers].sum(axis=0)
            notes.append(f"re-packed {movers.size} workload(s) so {state.names[hosts[order[b]]]} stays empty")
    host_idx = np.full(a.shape, -1, dtype=np.int64)
    host_idx[a >= 0] = hosts[order][a[a >= 0]]  # (no eligible host at all: nothing placed)
    host_idx = _settle(state, d, host_idx, prefer=hosts[order])
    _verify(state, d, host_idx)
    moves = []
    for i in range(len(names)):
        h = int(host_idx[i])
        if h < 0:
            moves.append(move(PLACE, i, -1, -1, NO_ROOM))
        else:
            why = "already active host" if state.workload_count[h] > 0 else "opened: active hosts were full"
            moves.append(move(PLACE, i, -1, h, why))
    before = int(np.count_nonzero(state.workload_count[hosts] > 0))
    used = set(host_idx[host_idx >= 0].tolist()) | set(hosts[active].tolist())
    opened = len(used) - before
    placed = int(np.sum(host_idx >= 0))
    on = len(set(host_idx[host_idx >= 0].tolist()))
    summary = (f"placed {placed}/{len(names)} workloads on {on} hosts; "
               f"opened {opened} empty host(s); active hosts {before} -> {len(used)}")
    return Plan("batch-placement", host_idx, moves, before, len(used),
                host_lower_bound(d, state, hosts), summary, notes, list(names), list(state.names))


def _overfull(state: ClusterState, demands: np.ndarray, target: np.ndarray,
              source: np.ndarray | None = None) -> list[tuple[int, int, float, float]]:
    """(host, resource, load, capacity) of each host the plan overfills, replayed as the ledger will
    claim it: the moved workloads leave their sources, then are added to their targets in workload
    order, each host held to capacity x overcommit + CLAIM_EPS (the same float sums as the claims)."""
    moved = (target >= 0) if source is None else (target >= 0) & (target != source)
    if not moved.any():
        return []
    load = state.allocated.copy()
    if source is not None:
        np.subtract.at(load.T, source[moved], demands[moved])
        np.maximum(load, 0.0, out=load)
    np.add.at(load.T, target[moved], demands[moved])
    hosts = np.unique(target[moved])
    over = load[:, hosts] > state.capacity[:, hosts] + CLAIM_EPS
    return [(int(hosts[j]), int(r), float(load[r, hosts[j]]), float(state.capacity[r, hosts[j]]))
            for r, j in np.argwhere(over)]


def _settle(state: ClusterState, demands: np.ndarray, target: np.ndarray, *,
            source: np.ndarray | None = None, prefer: np.ndarray | None = None) -> np.ndarray:
    """`target` with every claim guaranteed to pass, replayed as _overfull does. A workload whose
    claim would overfill its host (float sums on huge hosts, beyond the packer's slack) stays on
    its `source` host (consolidation), or goes to the first host of `prefer` it fits (batch), or
    stays unplaced. Normally a no-op: one vectorized check."""
    if not _overfull(state, demands, target, source):
        return target
    out = target.copy()
    moved = (out >= 0) if source is None else (out >= 0) & (out != source)
    load = state.allocated.copy()
    if source is not None:
        np.subtract.at(load.T, source[moved], demands[moved])
        np.maximum(load, 0.0, out=load)
    cap = state.capacity + CLAIM_EPS
    for i in np.flatnonzero(moved):
        h = int(out[i])
        if not np.all(load[:, h] + demands[i] <= cap[:, h]):
            if source is not None:
                h = int(source[i])  # it never leaves: its source keeps room for it
            else:
                pool = np.zeros(0, dtype=np.int64) if prefer is None else prefer
                fits = np.flatnonzero(np.all(load[:, pool] + demands[i][:, None] <= cap[:, pool], axis=0))
                h = int(pool[fits[0]]) if fits.size else -1
            out[i] = h
        if h >= 0:
            load[:, h] += demands[i]
    return out


def _verify(state: ClusterState, demands: np.ndarray, target: np.ndarray,
            source: np.ndarray | None = None) -> None:
    """Every host the plan touches must hold its planned load within its own capacity (checked
    before returning): InfeasiblePackingError, naming the host and resource, otherwise."""
    over = _overfull(state, demands, target, source)
    if over:
        h, r, load, cap = over[0]
        raise InfeasiblePackingError(
            f"plan overfills host {state.names[h]!r} in {state.resources.names[r]}: {load!r} > {cap!r}"
            f" (+{CLAIM_EPS:g}); {len(over)} host/resource pair(s) over", detail={"over": over[:20]})


def plan_consolidation(
    state: ClusterState,
    names: Sequence[str],
    demands: Any,
    current: Sequence[int],
    *,
    migration_cost: float | Sequence[float] = 0.1,
    host_value: float = 1.0,
    max_migrations: int | None = None,
    allowed: np.ndarray | None = None,
) -> Plan:
    """Empty as many active hosts as possible by moving their workloads onto hosts that stay active.

    `state` already holds these workloads (allocated on `current` hosts). A host is emptied only if
    all its workloads fit elsewhere and their summed migration cost is below `host_value`; hosts with
    the cheapest workloads go first. Within `max_migrations` in total.
    """
    d = _check_demands(state, names, demands)
    cur = np.asarray(current, dtype=np.int64)
    if cur.shape != (len(names),) or np.any(cur < 0) or np.any(cur >= state.n):
        raise InvalidInputError("current must give a valid host index for every workload")
    cost = np.broadcast_to(np.asarray(migration_cost, dtype=np.float64), (len(names),)).copy()
    if np.any(cost < 0) or not np.all(np.isfinite(cost)):
        raise InvalidInputError("migration costs must be finite and >= 0")
    eligible = _eligible(state, allowed)
    scale = _reference(state)
    free = (state.capacity - state.allocated).T.copy()  # (H, R), updated as moves are planned
    active = np.zeros(state.n, dtype=bool)
    active[cur] = True
    active |= state.workload_count > 0
    before = int(active.sum())
    target = cur.copy()
    notes: list[str] = []
    budget = np.inf if max_migrations is None else max_migrations
    # candidates: hosts holding only known workloads (others cannot be emptied by this plan)
    known_count = np.bincount(cur, minlength=state.n)
    cands = [h for h in np.flatnonzero(active) if known_count[h] == state.workload_count[h] or
             state.workload_count[h] == 0]
    load = np.zeros(state.n)
    np.add.at(load, cur, (d / scale).sum(axis=1))
    cands.sort(key=lambda h: (float(cost[cur == h].sum()), load[h], h))
    reason: dict[int, tuple[str, dict[str, float]]] = {}
    for h in cands:
        mine = np.flatnonzero(target == h)
        if mine.size == 0:
            continue
        fresh = mine[cur[mine] == h]  # workloads already planned to move are re-targeted for free
        c = float(cost[fresh].sum())
        if c >= host_value:
            notes.append(f"kept {state.names[h]}: moving {fresh.size} workload(s) costs {c:g}"
                         f" >= host value {host_value:g}")
            continue
        if fresh.size > budget:
            notes.append(f"kept {state.names[h]}: {fresh.size} migrations exceed the remaining budget")
            continue
        dest = np.flatnonzero(active & eligible)
        dest = dest[dest != h]
        if dest.size == 0:
            continue
        # tightest destinations first: fill hosts that are already full-ish
        dest = dest[np.argsort((free[dest] / scale).sum(axis=1), kind="stable")]
        sub = fit_into(d[mine], free[dest], scale)
        if np.any(sub < 0):
            notes.append(f"kept {state.names[h]}: its {mine.size} workload(s) do not fit elsewhere")
            continue
        for i, b in zip(mine, sub, strict=True):
            t = int(dest[b])
            free[t] -= d[i]
            free[h] += d[i]
            target[i] = t
            # a workload moved twice keeps the reason of its first move (it frees its original host)
            reason.setdefault(int(i), (f"empties {state.names[h]} (cost {c:g} < host value {host_value:g})",
                                       {"cost": c, "host_value": host_value, "workloads": float(mine.size)}))
        active[h] = False
        budget -= fresh.size
    settled = _settle(state, d, target, source=cur)
    for i in np.flatnonzero(settled != target):  # rounding left no room: it stays, so does its host
        active[cur[i]] = True
        notes.append(f"kept {names[int(i)]} on {state.names[cur[i]]}: no room left on "
                     f"{state.names[target[i]]} once summed as the ledger will")
    target = settled
    moves = [move(MIGRATE, i, int(cur[i]), int(target[i]), reason[i][0], **reason[i][1])
             for i in range(len(names)) if target[i] != cur[i]]
    _verify(state, d, target, source=cur)
    hosts = np.flatnonzero(eligible)
    after = int(active.sum())
    lb = host_lower_bound(d, state, hosts)
    summary = (f"active hosts {before} -> {after} with {len(moves)} migration(s); "
               f"lower bound {lb} host(s) for these workloads")
    return Plan("consolidation", target, moves, before, after, lb, summary, notes, list(names),
                list(state.names))
