"""Scorers: raw per-candidate scores (higher is better); the pipeline normalizes them to [0, 1].

Each takes the candidate host indices (already filtered) and returns one float per candidate.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from poolvisor.domain.models import GroupPolicy
from poolvisor.policies.placement.request import Request
from poolvisor.state.cluster import ClusterState


class Scorer(Protocol):
    name: str

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray: ...


def fractions_after(view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
    """(R, C) fraction of each resource in use after placing the request; NaN where capacity is 0."""
    cap = view.capacity[:, candidates]
    after = view.allocated[:, candidates] + req.demand[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cap > 0, after / np.where(cap > 0, cap, 1.0), np.nan)


def _mean_fraction(view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
    fr = fractions_after(view, req, candidates)
    demanded = req.demand > 0
    rows = fr[demanded] if demanded.any() else fr
    valid = ~np.isnan(rows)
    total = np.where(valid, rows, 0.0).sum(axis=0)
    return total / np.maximum(valid.sum(axis=0), 1)


class BestFitScorer:
    """Prefer the fullest host that still fits (packs tightly, frees whole hosts)."""

    name = "best-fit"

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        return _mean_fraction(view, req, candidates)


class WorstFitScorer:
    """Prefer the emptiest host (spreads load, leaves headroom everywhere)."""

    name = "worst-fit"

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        return -_mean_fraction(view, req, candidates)


class BalancedScorer:
    """Prefer hosts whose resource fractions stay close to each other (avoid stranding one resource)."""

    name = "balanced"

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        fr = fractions_after(view, req, candidates)
        valid = ~np.isnan(fr)
        n = np.maximum(valid.sum(axis=0), 1)
        z = np.where(valid, fr, 0.0)
        mean = z.sum(axis=0) / n
        var = (np.where(valid, (z - mean) ** 2, 0.0)).sum(axis=0) / n
        return -np.sqrt(var)


class DotProductScorer:
    """Panigrahy's dot-product: align the normalized demand with the host's normalized free vector."""

    name = "dot-product"

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        cap = view.capacity[:, candidates]
        safe = np.where(cap > 0, cap, 1.0)
        free = (cap - view.allocated[:, candidates]) / safe
        dem = req.demand[:, None] / safe
        return (dem * free).sum(axis=0)


class GroupSoftScorer:
    """Soft affinity: prefer hosts with group members; soft anti-affinity: prefer hosts without."""

    name = "soft-affinity"

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        if not req.group or req.group_policy not in (GroupPolicy.SOFT_AFFINITY,
                                                      GroupPolicy.SOFT_ANTI_AFFINITY):
            return np.zeros(candidates.size)
        counts = view.group_counts.get(req.group)
        c = counts[candidates].astype(np.float64) if counts is not None else np.zeros(candidates.size)
        return c if req.group_policy is GroupPolicy.SOFT_AFFINITY else -c
