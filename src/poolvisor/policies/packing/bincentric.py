"""Bin-centric heuristics (Panigrahy et al. 2011): fill one bin at a time with the best-aligned item.

Open a bin; while some unplaced item fits its residual r, add the item that maximizes the weighted
dot product <w*u, r> ("dot") or minimizes the weighted distance ||r - u||_w ("l2"); then open the next
bin. Weights are uniform or dynamic (remaining unplaced demand per dimension). Each step is one
vectorized pass over the unplaced items.
"""

from __future__ import annotations

import numpy as np

from poolvisor.policies.packing.problem import tolerance


def bin_centric(
    items: np.ndarray,
    capacity: np.ndarray,
    *,
    score: str = "dot",
    dynamic: bool = False,
    bins_residual: np.ndarray | None = None,
    allow_new: bool = True,
    tol: float | None = None,
) -> np.ndarray:
    """Assignment (n,); `tol` (absolute) as in greedy.item_centric."""
    n, d = items.shape
    u = items / capacity
    slack = tolerance(capacity) if tol is None else np.full(d, float(tol))
    out = np.full(n, -1, dtype=np.int64)
    # unplaced items kept compact in the first m rows (removal swaps in the last row), so every step
    # costs O(unplaced), and ties still go to the lowest original index
    idx = np.arange(n)
    sz, un = items.copy(), u.copy()
    m = n
    left = u.sum(axis=0)  # unplaced normalized demand per dimension (dynamic weights)
    uniform = np.full(d, 1.0 / d)
    fixed = [] if bins_residual is None else list(np.asarray(bins_residual, dtype=np.float64))
    b = 0
    while m > 0:
        if b < len(fixed):
            res = fixed[b].copy()
        elif allow_new:
            res = capacity.astype(np.float64).copy()
        else:
            break
        placed_any = False
        while m > 0:
            fit = np.all(sz[:m] <= res + slack, axis=1)
            if not fit.any():
                break
            if dynamic:
                tot = left.sum()
                w = left / tot if tot > 0 else uniform
            else:
                w = uniform
            r = res / capacity
            if score == "dot":
                val = np.where(fit, un[:m] @ (w * r), -np.inf)
                best = val.max()
            else:
                diff = r - un[:m]
                val = np.where(fit, -((diff * diff) @ w), -np.inf)
                best = val.max()
            cand = np.flatnonzero(val == best)
            p = int(cand[np.argmin(idx[cand])])
            i = int(idx[p])
            out[i] = b
            res -= items[i]
            left -= u[i]
            m -= 1
            idx[p], sz[p], un[p] = idx[m], sz[m], un[m]
            placed_any = True
        if not placed_any and b >= len(fixed):
            break  # a fresh bin took nothing: only possible when no item fits an empty bin
        b += 1
    return out
