"""Lower bounds on the number of bins: cheap, valid for any vector packing instance.

* L1: max over dimensions of ceil(sum of sizes / capacity).
* Martello-Toth L2 per dimension (1-d bound that counts items larger than half the bin).
* Conflict clique: items that pairwise cannot share a bin (greedy clique over the largest items).
"""

from __future__ import annotations

import numpy as np

from poolvisor.policies.packing.problem import tolerance


def _ceil_div(a: np.ndarray | float, c: float) -> np.ndarray:
    # ceil with a small tolerance so that 3.0000000001 (float noise) does not become 4
    return np.ceil(np.asarray(a, dtype=np.float64) / c - 1e-9)


def l1_bound(items: np.ndarray, capacity: np.ndarray) -> int:
    if items.shape[0] == 0:
        return 0
    return int(np.max(_ceil_div(items.sum(axis=0) / capacity, 1.0)))


def mt_l2_bound(sizes: np.ndarray, cap: float) -> int:
    """Martello-Toth L2 for one dimension, vectorized over the thresholds k in {0} U sizes <= cap/2."""
    w = np.sort(sizes)[::-1]
    if w.size == 0:
        return 0
    ks = np.unique(np.concatenate(([0.0], w[w <= cap / 2])))
    # counts/sums of each class per k via sorted searches (w descending -> use ascending copy)
    asc = w[::-1]
    csum = np.concatenate(([0.0], np.cumsum(asc)))
    total = csum[-1]

    def count_gt(t: np.ndarray) -> np.ndarray:  # items with size > t
        return asc.size - np.searchsorted(asc, t, side="right")

    def sum_gt(t: np.ndarray) -> np.ndarray:
        return total - csum[np.searchsorted(asc, t, side="right")]

    half = cap / 2
    n1 = count_gt(cap - ks)  # J1: size > C - k
    n12 = count_gt(np.full_like(ks, half))  # J1 + J2: size > C/2
    s12 = sum_gt(np.full_like(ks, half))
    s1 = sum_gt(cap - ks)
    n2 = n12 - n1
    s2 = s12 - s1
    # J3: k <= size <= C/2
    s3 = sum_gt(ks - 1e-12 * max(cap, 1.0)) - s12
    extra = np.maximum(0.0, _ceil_div(s3 - (n2 * cap - s2), cap))
    return int(np.max(n1 + n2 + extra))


def conflicts(items: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """(n, n) bool: items i and j cannot share a bin (some dimension overflows). O(n^2 d) memory-light."""
    n = items.shape[0]
    tol = tolerance(capacity)
    out = np.zeros((n, n), dtype=bool)
    for j in range(items.shape[1]):  # per dimension keeps the temporary at (n, n)
        out |= items[:, None, j] + items[None, :, j] > capacity[j] + tol[j]
    np.fill_diagonal(out, False)
    return out


def clique_bound(items: np.ndarray, capacity: np.ndarray, max_items: int = 2000) -> int:
    """Greedy clique Q in the conflict graph (by degree, then by total size), plus an L1 bound on the
    items that conflict with every member of Q (they cannot join any of Q's bins)."""
    n = items.shape[0]
    if n == 0:
        return 0
    if n > max_items:  # quadratic memory: fall back to the largest items only
        keep = np.argsort(-(items / capacity).sum(axis=1), kind="stable")[:max_items]
        items = items[keep]
        n = max_items
    conf = conflicts(items, capacity)
    deg = conf.sum(axis=1)
    best = 0
    for key in (deg, (items / capacity).sum(axis=1)):
        cand = np.ones(n, dtype=bool)  # items still adjacent to every clique member
        size = 0
        for i in np.argsort(-key, kind="stable"):
            if cand[i]:
                size += 1
                cand &= conf[i]
        rest = int(np.max(np.ceil(items[cand].sum(axis=0) / capacity - 1e-9))) if cand.any() else 0
        best = max(best, size + rest)
    return best


def lower_bound(items: np.ndarray, capacity: np.ndarray) -> int:
    """The best of the cheap bounds above (>= 1 when there is at least one item)."""
    if items.shape[0] == 0:
        return 0
    lb = l1_bound(items, capacity)
    for j in range(items.shape[1]):
        lb = max(lb, mt_l2_bound(items[:, j], float(capacity[j])))
    return max(lb, clique_bound(items, capacity), 1)
