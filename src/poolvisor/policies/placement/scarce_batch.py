"""Batch placement that keeps scarce resources free, as the keep-scarce-free scorer does one by one.

The packer (packing/consolidate.py) minimises hosts and knows nothing of GPUs: left alone it fills a GPU
host's memory with ordinary VMs. Here the batch is planned in tiers: workloads that use the same
scarce resources are packed together onto the hosts that have no *other* scarce resource free
(workloads using the most scarce resources first, re-reading what is free after each tier); what
is left is then packed onto every allowed host, so a batch fails only where the packer alone fails.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from poolvisor.policies.balancing.actions import PLACE, Action
from poolvisor.policies.packing.consolidate import (
    NO_ROOM,
    Plan,
    _eligible,
    host_lower_bound,
    move,
    plan_batch_placement,
)
from poolvisor.policies.placement.scarce import FREE_EPS, scarce_rows
from poolvisor.state.cluster import ClusterState


def plan_batch_keeping_scarce(state: ClusterState, names: Sequence[str], demands: np.ndarray, *,
                              allowed: np.ndarray | None = None, scarce: Sequence[str] = ()) -> Plan:
    """Like `plan_batch_placement`; hosts with free `scarce` resources a workload does not use are
    offered to it only when no other host fits it."""
    rows = scarce_rows(state.resources, scarce)
    d = np.asarray(demands, dtype=np.float64).reshape(len(names), len(state.resources))
    free0 = state.capacity[rows] - state.allocated[rows] > FREE_EPS
    if rows.size == 0 or not free0.any() or len(names) == 0:
        return plan_batch_placement(state, names, d, allowed=allowed)
    ok = _eligible(state, allowed)
    work = state.copy()
    assignment = np.full(len(names), -1, dtype=np.int64)
    moves: list[Action | None] = [None] * len(names)
    notes: list[str] = []
    uses = d[:, rows] > 0
    patterns, tier = np.unique(uses, axis=0, return_inverse=True)
    tier = tier.reshape(-1)
    for p in sorted(range(len(patterns)), key=lambda k: -int(patterns[k].sum())):
        free = work.capacity[rows] - work.allocated[rows] > FREE_EPS
        avoid = (free & ~patterns[p][:, None]).any(axis=0)
        _place(work, names, d, np.flatnonzero(tier == p), ok & ~avoid, assignment, moves, notes, "")
    left = np.flatnonzero(assignment < 0)
    kept = [state.resources.names[r] for r in rows]
    _place(work, names, d, left, ok, assignment, moves, notes,
           f" (only a host with free {'/'.join(kept)} fits)")
    before = int(np.count_nonzero(ok & (state.workload_count > 0)))
    used = ok & (state.workload_count > 0)
    used[assignment[assignment >= 0]] = True
    after = int(np.count_nonzero(used))
    placed = int(np.count_nonzero(assignment >= 0))
    on = int(np.unique(assignment[assignment >= 0]).size)
    summary = (f"placed {placed}/{len(names)} workloads on {on} hosts; opened {after - before} empty "
               f"host(s); active hosts {before} -> {after}")
    notes.append(f"hosts with free {'/'.join(kept)} were offered only to workloads using it, "
                 "or when no other host fitted (keep-scarce-free)")
    final = [m if m is not None else move(PLACE, i, -1, -1, NO_ROOM) for i, m in enumerate(moves)]
    return Plan("batch-placement", assignment, final, before, after,
                host_lower_bound(d, state, np.flatnonzero(ok)), summary, notes, list(names),
                list(state.names))


def _place(work: ClusterState, names: Sequence[str], d: np.ndarray, idx: np.ndarray, hosts: np.ndarray,
           assignment: np.ndarray, moves: list[Action | None], notes: list[str], why: str) -> None:
    """Pack workloads `idx` onto the `hosts` mask of `work`, allocating what was placed."""
    if idx.size == 0 or not hosts.any():
        return
    sub = plan_batch_placement(work, [names[i] for i in idx], d[idx], allowed=hosts)
    notes.extend(sub.notes)
    for j, i in enumerate(idx):
        h = int(sub.assignment[j])
        if h >= 0:
            work.allocate(h, d[i], force=True)  # the plan was verified against `work` already
            assignment[i] = h
            m = sub.moves[j]
            moves[i] = move(PLACE, int(i), -1, h, m.rule + why, **m.explanation.figures)
