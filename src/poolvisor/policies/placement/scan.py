"""The pipeline's choice without its explanation: the exact fallback of the placement index.

`choose` runs the policy's filters and weighted, normalized scorers exactly as `pipeline.place`
does and returns the same host, skipping rejection counting and the top-k sort. `first_best`
replays the pipeline's tie-break (score descending, then lowest host index).
"""

from __future__ import annotations

import numpy as np

from poolvisor.policies.placement.pipeline import PlacementPolicy, normalize
from poolvisor.policies.placement.request import Request
from poolvisor.state.cluster import ClusterState


def first_best(cand: np.ndarray, total: np.ndarray) -> int:
    """The candidate `pipeline.place` picks: np.lexsort((cand, -total))[0], in O(C) when no NaN."""
    if np.isnan(total).any():
        return int(cand[np.lexsort((cand, -total))[0]])
    return int(cand[int(np.argmax(total))])  # argmax: first maximum, cand is ascending


def weighted_total(view: ClusterState, req: Request, policy: PlacementPolicy, cand: np.ndarray,
                   primary: tuple[str, np.ndarray] | None = None) -> np.ndarray:
    """Sum of weight * normalize(score) in policy order; `primary` supplies one scorer's raw scores."""
    total = np.zeros(cand.size)
    for scorer, weight in policy._scorers:
        if primary is not None and scorer.name == primary[0]:
            raw = primary[1]
        else:
            raw = np.asarray(scorer(view, req, cand), dtype=np.float64)
        total += weight * normalize(raw)
    return total


def choose(view: ClusterState, req: Request, policy: PlacementPolicy) -> int:
    """Host index `pipeline.place` would choose, or -1 when no host passes the filters."""
    alive = np.ones(view.n, dtype=bool)
    for flt in policy._filters:
        alive &= flt(view, req).mask
    cand = np.flatnonzero(alive)
    if cand.size == 0:
        return -1
    return first_best(cand, weighted_total(view, req, policy, cand))
