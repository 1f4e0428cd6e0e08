"""Bin-centric heuristics (Panigrahy et al. 2011): fill one bin at a time with the best-aligned item.

Open a bin; while some unplaced item fits its residual r, add the item that maximizes the weighted
dot product <w*u, r> ("dot") or minimizes the weighted distance ||r - u||_w ("l2"); then open the next
bin. Weights are uniform or dynamic (remaining unplaced demand per dimension). Each step is one
vectorized pass over the unplaced items.
"""

from __future__ import annotations

import numpy as np

from poolvisor.policies.packing.measures import dynamic_weights
from poolvisor.policies.packing.problem import tolerance


def bin_centric(
    items: np.ndarray,
    capacity: np.ndarray,
    *,
    score: str = "dot",
    dynamic: bool = False,
    bins_residual: np.ndarray | None = None,
    allow_new: bool = True,
) -> np.ndarray:
    n, d = items.shape
    u = items / capacity
    tol = tolerance(capacity)
    out = np.full(n, -1, dtype=np.int64)
    remaining = np.ones(n, dtype=bool)
    fixed = [] if bins_residual is None else list(np.asarray(bins_residual, dtype=np.float64))
    uniform = np.full(d, 1.0 / d)
    b = 0
    while remaining.any():
        if b < len(fixed):
            res = fixed[b].copy()
        elif allow_new:
            res = capacity.astype(np.float64).copy()
        else:
            break
        placed_any = False
        while True:
            fit = remaining & np.all(items <= res + tol, axis=1)
            if not fit.any():
                break
            w = dynamic_weights(u, remaining) if dynamic else uniform
            r = res / capacity
            if score == "dot":
                val = np.where(fit, (u * w) @ r, -np.inf)
                i = int(np.argmax(val))
            else:
                diff = r - u
                val = np.where(fit, (diff * diff) @ w, np.inf)
                i = int(np.argmin(val))
            out[i] = b
            remaining[i] = False
            res -= items[i]
            placed_any = True
        if not placed_any and b >= len(fixed):
            break  # a fresh bin took nothing: only possible when no item fits an empty bin
        b += 1
    return out
