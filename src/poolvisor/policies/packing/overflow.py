"""Penalty search for tight instances: all items in k bins, minimizing the total overflow.

Where the bin-emptying search needs room to insert items (it keeps every bin feasible), this one
works inside the infeasible space, like k-coloring by conflict minimization: every item is in one
of k bins, the objective is the summed normalized excess over capacity, and a tabu search relocates
or swaps items out of overloaded bins (best move over all candidates, vectorized). Overflow 0 means a
feasible packing into k bins. It suits instances with many small items per bin (Panigrahy classes
4 and 5), where bins are nearly full in some dimension and slack must be reshuffled across bins.
"""

from __future__ import annotations

import time

import numpy as np

from poolvisor.policies.packing.feasibility import bin_loads
from poolvisor.policies.packing.problem import tolerance


def _excess(load: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Summed normalized overflow of each row (bins or candidate bins)."""
    return (np.maximum(load - cap, 0.0) / cap).sum(axis=-1)


def pack_k(
    items: np.ndarray,
    capacity: np.ndarray,
    start: np.ndarray,
    k: int,
    deadline: float,
    rng: np.random.Generator,
    max_iters: int = 3000,
) -> np.ndarray | None:
    """Items with start == -1 are put where they overflow least; then tabu search to overflow 0."""
    s = items
    cap = capacity + tolerance(capacity)
    n = s.shape[0]
    a = start.copy()
    load = bin_loads(s, a, k)
    for i in np.flatnonzero(a < 0)[np.argsort(-(s[a < 0] / capacity).sum(axis=1), kind="stable")]:
        b = int(np.argmin(_excess(load + s[i], cap) - _excess(load, cap)))
        a[i] = b
        load[b] += s[i]
    tabu = np.zeros((n, k), dtype=np.int64)
    tenure = min(10, max(1, k // 2))
    cur = float(_excess(load, cap).sum())
    best_val = cur
    idx = np.arange(n)
    for it in range(1, max_iters + 1):
        if cur <= 0:
            return a
        if time.perf_counter() > deadline:
            return None
        over_bins = _excess(load, cap) > 0
        movers = np.flatnonzero(over_bins[a])
        if movers.size > 64:  # keep each iteration bounded
            movers = rng.choice(movers, 64, replace=False)
        src = a[movers]
        old_src = _excess(load[src], cap)  # (m,)
        new_src = _excess(load[src] - s[movers], cap)
        base = _excess(load, cap)  # (k,)
        # relocations: (m, k)
        new_dst = _excess(load[None, :, :] + s[movers][:, None, :], cap)
        d_rel = (new_src - old_src)[:, None] + new_dst - base[None, :]
        d_rel[np.arange(movers.size), src] = np.inf
        d_rel = np.where(tabu[movers] >= it, np.inf, d_rel)
        # swaps with an item j in another bin: (m, n'), a random subset of j when n is large
        js = idx if n <= 2000 else rng.choice(n, 2000, replace=False)
        bj = a[js]
        diff = s[js][None, :, :] - s[movers][:, None, :]  # s_j - s_i
        new_a = _excess(load[src][:, None, :] + diff, cap)
        new_b = _excess(load[bj][None, :, :] - diff, cap)
        d_swp = new_a - old_src[:, None] + new_b - base[bj][None, :]
        same = bj[None, :] == src[:, None]
        t_block = (tabu[movers][:, bj] >= it) | (tabu[js[None, :], src[:, None]] >= it)
        d_swp = np.where(same | t_block, np.inf, d_swp)
        noise = 1e-9
        d_rel = d_rel + rng.random(d_rel.shape) * noise
        d_swp = d_swp + rng.random(d_swp.shape) * noise
        r1 = int(np.argmin(d_rel))
        r2 = int(np.argmin(d_swp))
        v1, v2 = d_rel.flat[r1], d_swp.flat[r2]
        if not np.isfinite(min(v1, v2)):
            tabu[:] = 0  # everything tabu: forget and continue
            continue
        if v1 <= v2:
            mi, b = divmod(r1, k)
            i = int(movers[mi])
            src_b = int(a[i])
            load[src_b] -= s[i]
            load[b] += s[i]
            a[i] = b
            tabu[i, src_b] = it + tenure + int(rng.integers(0, 3))
        else:
            mi, jj = divmod(r2, js.size)
            i, j = int(movers[mi]), int(js[jj])
            ba, bb = int(a[i]), int(a[j])
            load[ba] += s[j] - s[i]
            load[bb] += s[i] - s[j]
            a[i], a[j] = bb, ba
            tabu[i, ba] = it + tenure + int(rng.integers(0, 3))
            tabu[j, bb] = it + tenure + int(rng.integers(0, 3))
        cur = float(_excess(load, cap).sum())
        best_val = min(best_val, cur)
    return a if cur <= 0 else None
