"""Item-centric greedy heuristics: first fit, first fit decreasing and best fit decreasing.

One Python step per item; each step is vectorized over the open bins. Bins may start partially
filled with their own capacities (`bins_residual`, e.g. hosts' free capacity), and new bins of
`capacity` are opened only when `allow_new` (otherwise an item that fits nowhere gets -1).
"""

from __future__ import annotations

import numpy as np

from poolvisor.policies.packing.measures import item_size, residual_measure
from poolvisor.policies.packing.problem import tolerance


class _Bins:
    """Residual capacities of open bins, grown on demand; fixed bins come first."""

    def __init__(self, items: np.ndarray, capacity: np.ndarray, bins_residual: np.ndarray | None,
                 allow_new: bool, tol: float | None = None):
        n, d = items.shape
        fixed = np.zeros((0, d)) if bins_residual is None else np.asarray(bins_residual, dtype=np.float64)
        self.capacity = capacity
        self.allow_new = allow_new
        self.res = np.empty((fixed.shape[0] + (n if allow_new else 0), d))
        self.res[: fixed.shape[0]] = fixed
        self.k = fixed.shape[0]
        self.tol = tolerance(capacity) if tol is None else np.full(d, float(tol))

    def fitting(self, s: np.ndarray) -> np.ndarray:
        return np.all(self.res[: self.k] >= s - self.tol, axis=1)

    def open(self) -> int | None:
        if not self.allow_new:
            return None
        self.res[self.k] = self.capacity
        self.k += 1
        return self.k - 1


def _choose(bins: _Bins, s: np.ndarray, rule: str, measure: str, weights: np.ndarray | None) -> int:
    fit = bins.fitting(s)
    if rule == "first":
        b = int(fit.argmax()) if fit.size else 0
        if fit.size and fit[b]:
            return b
    else:
        idx = np.flatnonzero(fit)
        if idx.size:
            left = (bins.res[idx] - s) / bins.capacity
            return int(idx[np.argmin(residual_measure(left, measure, weights))])
    nb = bins.open()
    return -1 if nb is None else nb


def item_centric(
    items: np.ndarray,
    capacity: np.ndarray,
    *,
    order: str = "none",
    rule: str = "first",
    measure: str = "l1",
    bins_residual: np.ndarray | None = None,
    allow_new: bool = True,
    tol: float | None = None,
) -> np.ndarray:
    """Assignment (n,) for: order in {none, decreasing, dynamic}; rule in {first, best}.

    `measure` orders the items (decreasing) and scores best fit; with order="dynamic" the next item
    is the largest under weights recomputed from the demand still unplaced. `tol` (absolute) replaces
    the default slack of REL_TOL x capacity: fixed bins of different sizes (hosts) need a slack that
    does not grow with the largest bin.
    """
    n = items.shape[0]
    u = items / capacity
    bins = _Bins(items, capacity, bins_residual, allow_new, tol)
    out = np.full(n, -1, dtype=np.int64)
    if order == "dynamic":
        remaining = np.ones(n, dtype=bool)
        left = u.sum(axis=0)  # unplaced demand per dimension, updated incrementally
        uniform = np.full(u.shape[1], 1.0 / max(u.shape[1], 1))
        for _ in range(n):
            tot = left.sum()
            w = left / tot if tot > 0 else uniform
            score = np.where(remaining, u @ w, -np.inf)
            i = int(np.argmax(score))
            remaining[i] = False
            left -= u[i]
            b = _choose(bins, items[i], rule, "weighted", w)
            out[i] = b
            if b >= 0:
                bins.res[b] -= items[i]
        return out
    seq = np.argsort(-item_size(u, measure), kind="stable") if order == "decreasing" else np.arange(n)
    weights = u.mean(axis=0) if measure == "avg" else None
    for i in seq:
        b = _choose(bins, items[i], rule, measure, weights)
        out[i] = b
        if b >= 0:
            bins.res[b] -= items[i]
    return out
