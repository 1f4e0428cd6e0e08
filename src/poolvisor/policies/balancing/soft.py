"""Soft affinity and anti-affinity on moves: what a migration costs in broken soft rules.

Placement weighs soft group rules (placement/scorers.GroupSoftScorer); a move must weigh them too,
or the balancer would quietly undo them. For a workload of a soft group, the rule's state is the
number of (workload, other member) pairs it breaks: soft affinity is broken by every member on
another host, soft anti-affinity by every member on the same host. A move's **penalty** is that
number after the move minus before it (> 0: the move breaks the rule more; < 0: it mends it),
evaluated for many destinations at once. Pure numpy over a ClusterState's group counts; a
workload's rule is (its group's key in the state, the group's policy): BalancingView.soft maps
workload rows to theirs (the live controller fills it; the simulators have no groups).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from poolvisor.state.cluster import ClusterState

SOFT_AFFINITY, SOFT_ANTI_AFFINITY = "soft-affinity", "soft-anti-affinity"


Rule = tuple[str, str]  # (group key in the state, "soft-affinity" | "soft-anti-affinity")


def soft_penalty(state: ClusterState, rule: Rule | None, src: int, dst: np.ndarray) -> np.ndarray:
    """Broken pairs after moving a workload of `rule`'s group from `src` to each host of `dst`,
    minus before (module doc); zeros when it has no soft rule."""
    dst = np.asarray(dst, dtype=np.int64)
    counts = None if rule is None else state.group_counts.get(rule[0])
    if rule is None or counts is None:
        return np.zeros(dst.size)
    c = counts[: state.n].astype(np.float64)
    others = float(c.sum()) - 1.0  # the other members, wherever they run
    here = c[src] - 1.0  # the other members on the source
    there = c[dst] - (dst == src)  # the other members on each destination
    if rule[1] == SOFT_AFFINITY:
        return (others - there) - (others - here)  # members elsewhere, after minus before
    return there - here


def rules_of(groups: Mapping[int, Rule | None]) -> dict[int, Rule]:
    """The soft rules among `groups` (row -> (group key, group policy)), the others dropped."""
    return {r: g for r, g in groups.items() if g is not None and g[1] in (SOFT_AFFINITY, SOFT_ANTI_AFFINITY)}


def describe(rule: Rule, penalty: float) -> str:
    """One line for an explanation: which rule a move bends and by how much."""
    group = rule[0].split("/", 1)[-1]
    word = "apart from" if rule[1] == SOFT_AFFINITY else "together with"
    return f"{rule[1]} of group {group}: {penalty:g} more member(s) {word} it"
