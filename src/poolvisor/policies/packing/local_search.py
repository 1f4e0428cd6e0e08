"""Built-in improvement without a solver: bin-emptying tabu search (after the consistent neighborhood
search of Buljubasic & Vasquez, C&OR 2016, simplified).

To go from k to k-1 bins, empty one bin: its items become the unassigned set U. Then, repeatedly,
insert an item u of U into a bin, ejecting at most two items of that bin so that u fits; the move
that most reduces the weight of U is taken (weight = size weighted by the demand per dimension),
unless it is tabu (an item may not go back into a bin it just left). U empty = a solution with
k-1 bins; then try k-2, until the lower bound or the deadline. The search never leaves the
feasible region of the remaining bins, so every solution it returns is feasible.
All move evaluations are vectorized over items (single ejections) and same-bin pairs.
"""

from __future__ import annotations

import time

import numpy as np

from poolvisor.policies.packing.feasibility import bin_loads
from poolvisor.policies.packing.problem import relabel, tolerance


def _padded(bin_of: np.ndarray, k: int) -> np.ndarray:
    """(k, max items per bin) matrix of item indices per bin, padded with -1."""
    placed = np.flatnonzero(bin_of >= 0)
    b = bin_of[placed]
    order = np.argsort(b, kind="stable")
    items, b = placed[order], b[order]
    counts = np.bincount(b, minlength=k)
    maxc = max(int(counts.max()) if counts.size else 0, 1)
    starts = np.cumsum(counts) - counts
    m = np.full((k, maxc), -1, dtype=np.int64)
    m[b, np.arange(b.size) - starts[b]] = items
    return m


class _Search:
    def __init__(self, items: np.ndarray, capacity: np.ndarray, rng: np.random.Generator):
        self.s = items
        self.cap = capacity + tolerance(capacity)
        u = items / capacity
        omega = u.sum(axis=0)
        omega = omega / omega.sum() * u.shape[1] if omega.sum() > 0 else np.ones(u.shape[1])
        self.w = u @ omega + 1e-6  # every item weighs something, so ejecting one is never free
        self.rng = rng
        self.n = items.shape[0]

    def pack_set(self, bin_of: np.ndarray, k: int, deadline: float, max_iters: int) -> np.ndarray | None:
        """Try to place the items with bin_of == -1 into bins 0..k-1; the result or None."""
        s, w, cap, rng = self.s, self.w, self.cap, self.rng
        bin_of = bin_of.copy()
        load = bin_loads(s, bin_of, k)
        tabu = np.zeros((self.n, k), dtype=np.int64)  # iteration until which item may not enter bin
        tenure = 7
        unassigned = np.flatnonzero(bin_of < 0)
        obj = float(w[unassigned].sum())
        best_obj = obj
        for it in range(1, max_iters + 1):
            if unassigned.size == 0:
                return bin_of
            if time.perf_counter() > deadline:
                return None
            # direct insertions first (best fit by weighted residual)
            inserted = False
            for uu in unassigned[np.argsort(-w[unassigned])]:
                fit = np.all(load + s[uu] <= cap, axis=1)
                if fit.any():
                    idx = np.flatnonzero(fit)
                    b = int(idx[np.argmin(((cap - load[idx] - s[uu]) / cap).sum(axis=1))])
                    bin_of[uu] = b
                    load[b] += s[uu]
                    obj -= w[uu]
                    inserted = True
            if inserted:
                unassigned = np.flatnonzero(bin_of < 0)
                best_obj = min(best_obj, obj)
                continue
            m = _padded(bin_of, k)
            ia, ib = np.triu_indices(m.shape[1], 1)
            p1, p2 = m[:, ia].ravel(), m[:, ib].ravel()
            ok = (p1 >= 0) & (p2 >= 0)
            p1, p2 = p1[ok], p2[ok]
            pb = bin_of[p1]
            placed = np.flatnonzero(bin_of >= 0)
            sb = bin_of[placed]
            # (gain, u, ejected items, bin) of the best move
            best: tuple[float, int, tuple[int, ...] | None, int] = (-np.inf, -1, None, -1)
            for uu in unassigned:
                # single ejection: placed item e leaves its bin, u enters it
                feas = np.all(load[sb] - s[placed] + s[uu] <= cap, axis=1)
                feas &= tabu[uu, sb] < it
                if feas.any():
                    gains = w[uu] - w[placed] + rng.random(placed.size) * 1e-9
                    gains = np.where(feas, gains, -np.inf)
                    j = int(np.argmax(gains))
                    if gains[j] > best[0]:
                        best = (float(gains[j]), int(uu), (int(placed[j]),), int(sb[j]))
                if p1.size:
                    feas2 = np.all(load[pb] - s[p1] - s[p2] + s[uu] <= cap, axis=1)
                    feas2 &= tabu[uu, pb] < it
                    if feas2.any():
                        g2 = w[uu] - w[p1] - w[p2] + rng.random(p1.size) * 1e-9
                        g2 = np.where(feas2, g2, -np.inf)
                        j = int(np.argmax(g2))
                        if g2[j] > best[0]:
                            best = (float(g2[j]), int(uu), (int(p1[j]), int(p2[j])), int(pb[j]))
            gain, uu, ejected, b = best
            if ejected is None:
                # no move at all: every u conflicts with every bin even after ejections -> give up
                return None
            for e in ejected:
                bin_of[e] = -1
                load[b] -= s[e]
                tabu[e, b] = it + tenure + int(rng.integers(0, 4))
            bin_of[uu] = b
            load[b] += s[uu]
            obj -= gain
            best_obj = min(best_obj, obj)
            unassigned = np.flatnonzero(bin_of < 0)
        return None


def improve(
    items: np.ndarray,
    capacity: np.ndarray,
    assignment: np.ndarray,
    lower_bound: int,
    time_limit: float,
    *,
    seed: int = 0,
    iters_per_try: int = 4000,
) -> np.ndarray:
    """Return an assignment with at most as many bins as `assignment` (fewer if found in time)."""
    deadline = time.perf_counter() + time_limit
    rng = np.random.default_rng(seed)
    best = relabel(assignment)
    k = int(best.max()) + 1 if best.size else 0
    if k <= lower_bound:
        return best
    search = _Search(items, capacity, rng)
    attempt = 0
    while k > lower_bound and time.perf_counter() < deadline:
        loads = bin_loads(items, best, k)
        wload = (loads / capacity).sum(axis=1)
        # empty one of the lightest bins: the lightest first, then others on later attempts
        order = np.argsort(wload, kind="stable")
        victim = int(order[attempt % min(k, 3)]) if attempt < 3 else int(rng.integers(0, k))
        start = best.copy()
        start[start == victim] = -1
        start[start > victim] -= 1
        found = search.pack_set(start, k - 1, deadline, iters_per_try)
        if found is not None:
            best, k, attempt = relabel(found), k - 1, 0
        else:
            attempt += 1
    return best
