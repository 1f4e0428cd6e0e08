"""Built-in improvement without a solver: to go from k to k-1 bins, empty one bin and re-pack its
items with two tabu searches in turn: the penalty search of `overflow` (through overfull bins), and
the bin-emptying search below (after the consistent neighborhood search of Buljubasic & Vasquez,
C&OR 2016, simplified).

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

from poolvisor.policies.packing import overflow
from poolvisor.policies.packing.feasibility import bin_loads
from poolvisor.policies.packing.problem import relabel, tolerance


class _Slots:
    """Items per bin in a (k, width) matrix of item indices (-1 = empty slot), updated in O(1) per move,
    so same-bin pairs are two fancy-indexing operations instead of a regrouping per iteration."""

    def __init__(self, bin_of: np.ndarray, k: int):
        placed = np.flatnonzero(bin_of >= 0)
        counts = np.bincount(bin_of[placed], minlength=k)
        width = max(int(counts.max()) if counts.size else 1, 1) + 2
        self.m = np.full((k, width), -1, dtype=np.int64)
        self.pos = np.full(bin_of.size, -1, dtype=np.int64)
        fill = np.zeros(k, dtype=np.int64)
        for i in placed:
            b = int(bin_of[i])
            self.m[b, fill[b]] = i
            self.pos[i] = fill[b]
            fill[b] += 1
        self._pairs()

    def _pairs(self) -> None:
        self.ia, self.ib = np.triu_indices(self.m.shape[1], 1)

    def remove(self, i: int, b: int) -> None:
        self.m[b, self.pos[i]] = -1
        self.pos[i] = -1

    def add(self, i: int, b: int) -> None:
        free = np.flatnonzero(self.m[b] < 0)
        if free.size == 0:
            self.m = np.concatenate([self.m, np.full((self.m.shape[0], 2), -1, dtype=np.int64)], axis=1)
            self._pairs()
            free = np.flatnonzero(self.m[b] < 0)
        self.m[b, free[0]] = i
        self.pos[i] = free[0]

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p1, p2 = self.m[:, self.ia], self.m[:, self.ib]
        ok = (p1 >= 0) & (p2 >= 0)
        rows = np.broadcast_to(np.arange(self.m.shape[0])[:, None], p1.shape)
        return p1[ok], p2[ok], rows[ok]


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

    def _multi_ejection(self, unassigned: np.ndarray, load: np.ndarray, slots: _Slots, tabu: np.ndarray,
                        it: int) -> tuple[int, list[int], int] | None:
        """(u, ejected items, bin) with the lightest greedy set of items whose removal lets u fit."""
        s, w, cap = self.s, self.w, self.cap
        best: tuple[float, int, list[int], int] | None = None
        rng = self.rng
        for uu in unassigned[np.argsort(-w[unassigned], kind="stable")][:4]:  # bounded: largest few u
            allowed = np.flatnonzero(tabu[uu] < it)
            if allowed.size == 0:  # all tabu: aspiration
                allowed = np.arange(load.shape[0])
            if allowed.size > 32:
                allowed = rng.choice(allowed, 32, replace=False)
            for b in allowed:
                excess = load[b] + s[uu] - cap
                members = slots.m[b][slots.m[b] >= 0]
                chosen: list[int] = []
                weight = 0.0
                while np.any(excess > 0) and members.size:
                    cover = (np.minimum(s[members], np.maximum(excess, 0)) / cap).sum(axis=1) / w[members]
                    j = int(np.argmax(cover))
                    if cover[j] <= 0:
                        break
                    e = int(members[j])
                    chosen.append(e)
                    weight += float(w[e])
                    excess = excess - s[e]
                    members = np.delete(members, j)
                    if best is not None and weight >= best[0]:
                        break
                if np.all(excess <= 0) and (best is None or weight < best[0]):
                    best = (weight, int(uu), chosen, int(b))
        return None if best is None else (best[1], best[2], best[3])

    def pack_set(self, bin_of: np.ndarray, k: int, deadline: float, max_iters: int) -> np.ndarray | None:
        """Try to place the items with bin_of == -1 into bins 0..k-1; the result or None."""
        s, w, cap, rng = self.s, self.w, self.cap, self.rng
        bin_of = bin_of.copy()
        load = bin_loads(s, bin_of, k)
        slots = _Slots(bin_of, k)
        tabu = np.zeros((self.n, k), dtype=np.int64)  # iteration until which item may not enter bin
        tenure = min(7, k // 2)  # few bins: short memory, or every bin becomes tabu
        spread = min(4, k // 2 + 1)
        unassigned = np.flatnonzero(bin_of < 0)

        def put(i: int, b: int) -> None:
            bin_of[i] = b
            load[b] += s[i]
            slots.add(i, b)

        for it in range(1, max_iters + 1):
            if unassigned.size == 0:
                return bin_of
            if time.perf_counter() > deadline:
                return None
            room = cap - s[unassigned]  # (U, d): what a bin may hold besides u
            # direct insertions first (tightest fit by normalized residual), largest u first
            fit = np.all(load[None, :, :] <= room[:, None, :], axis=2)  # (U, k)
            if fit.any():
                for j in np.argsort(-w[unassigned], kind="stable"):
                    uu = int(unassigned[j])
                    ok = np.flatnonzero(np.all(load + s[uu] <= cap, axis=1))
                    if ok.size:
                        b = int(ok[np.argmin(((cap - load[ok] - s[uu]) / cap).sum(axis=1))])
                        put(uu, b)
                unassigned = np.flatnonzero(bin_of < 0)
                continue
            placed = np.flatnonzero(bin_of >= 0)
            sb = bin_of[placed]
            base1 = load[sb] - s[placed]  # (n', d) bin load without item e
            feas1 = np.all(base1[None, :, :] <= room[:, None, :], axis=2)  # (U, n')
            feas1 &= tabu[unassigned][:, sb] < it
            g1 = np.where(feas1, w[unassigned][:, None] - w[placed][None, :], -np.inf)
            g1 += rng.random(g1.shape) * 1e-9
            j1 = int(np.argmax(g1))
            best1 = g1.flat[j1]
            p1, p2, pb = slots.pairs()
            best2 = -np.inf
            if p1.size:
                base2 = load[pb] - s[p1] - s[p2]
                feas2 = np.all(base2[None, :, :] <= room[:, None, :], axis=2)
                feas2 &= tabu[unassigned][:, pb] < it
                g2 = np.where(feas2, w[unassigned][:, None] - (w[p1] + w[p2])[None, :], -np.inf)
                g2 += rng.random(g2.shape) * 1e-9
                j2 = int(np.argmax(g2))
                best2 = g2.flat[j2]
            if not np.isfinite(max(best1, best2)):
                # no single or pair ejection lets any u in: eject a greedy cover of the excess instead
                multi = self._multi_ejection(unassigned, load, slots, tabu, it)
                if multi is None:
                    return None  # every u conflicts with every bin even after emptying it
                uu, ejected, b = multi
            elif best1 >= best2:
                ui, ei = divmod(j1, placed.size)
                uu, ejected, b = int(unassigned[ui]), [int(placed[ei])], int(sb[ei])
            else:
                ui, ei = divmod(j2, p1.size)
                uu, ejected, b = int(unassigned[ui]), [int(p1[ei]), int(p2[ei])], int(pb[ei])
            for e in ejected:
                bin_of[e] = -1
                load[b] -= s[e]
                slots.remove(e, b)
                tabu[e, b] = it + tenure + int(rng.integers(0, spread))
            put(uu, b)
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
    iters_per_try: int = 1000,
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
        # the penalty search (through overfull bins) first; then the bin-emptying search, which keeps
        # every bin feasible and is stronger when items are large
        now = time.perf_counter()
        half = min(deadline, now + 0.5 * (deadline - now))
        found = overflow.pack_k(items, capacity, start, k - 1, half, rng, 2 * iters_per_try)
        if found is None:
            found = search.pack_set(start, k - 1, deadline, iters_per_try)
        if found is not None:
            best, k, attempt = relabel(found), k - 1, 0
        else:
            attempt += 1
    return best
