"""Compiled hot paths of the placement index (numba), with the numpy code as the fallback.

A host update and a tree query are a dozen numpy calls each on arrays of a few dozen values, so
numpy's per-call overhead, not arithmetic, sets the placement rate. These kernels do the same work
in one call each, with the same IEEE operations in the same order as the numpy path (and hence as
the best-fit scorer): (alloc + demand) / capacity per scored resource, summed left to right,
divided by the count; the capacity test `capacity - alloc >= demand - 1e-9`. No fastmath.

`available()` is False when numba is not installed (the optional `fast` extra) or when
POOLVISOR_NO_JIT=1; the index then uses numpy for everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from poolvisor.jit import CompileOnce

_update: Callable[..., None] | None = None
_pick: Callable[..., int] | None = None


def _compile() -> None:
    global _update, _pick
    from numba import njit

    @njit(cache=True, nogil=True)
    def block_max(l0: Any, blk: int, t: int) -> float:
        m = -np.inf
        for v in l0[blk, t]:
            if v != v:  # NaN propagates, like ndarray.max
                return v
            if v > m:
                m = v
        return m

    @njit(cache=True, nogil=True)
    def update(h: int, rows: int, alloc: Any, state: Any, max_count: Any, count: Any, check_state: bool,
               check_count: bool, pattern_of: Any, valid: Any, scored: Any, cap_t: Any, safe_t: Any,
               demand: Any, tol: Any, mask_t: Any, low: Any, neg_sign: bool, check_cap: bool,
               ptol: Any, check_scarce: bool, l0: Any, l1: Any, fanout: int) -> None:
        """Leaf h of rows [0, rows): host-local filters (capacity, scarce resources left free) and
        the best-fit score, then block maxima."""
        blk, off = h // fanout, h % fanout
        r_n = alloc.shape[0]
        ok_host = not (check_state and state[h] != 0) and not (
            check_count and max_count[h] > 0 and max_count[h] <= count[h])
        p = pattern_of[h]
        for t in range(rows):
            leaf = -np.inf
            if ok_host:
                total = 0.0
                for r in range(r_n):
                    if valid[p, t, r] != 0.0:
                        total += (alloc[r, h] + demand[t, r]) / safe_t[h, r]
                score = total / scored[p, t]
                if neg_sign:
                    score = -score
                if score < low[t]:
                    low[t] = score
                ok = mask_t[h, t]
                if ok and check_cap:
                    for r in range(r_n):
                        if not (cap_t[h, r] - alloc[r, h] >= tol[t, r]):
                            ok = False
                            break
                if ok and check_scarce:
                    for r in range(r_n):
                        if cap_t[h, r] - alloc[r, h] > ptol[t, r]:
                            ok = False
                            break
                if ok:
                    leaf = score
            l0[blk, t, off] = leaf
            l1[t, blk] = block_max(l0, blk, t)

    @njit(cache=True, nogil=True)
    def pick(t: int, l0: Any, l1: Any, fanout: int, low: Any, near: float, anti: Any, use_anti: bool,
             taken: Any, domains: Any, use_taken: bool, max_requeries: int, requeries: Any) -> int:
        """-1: no host; -2: near-tie (exact scan); -3: too many rejected picks; else the host."""
        n1 = l1.shape[1]
        hi = -np.inf
        for v in l1[t]:
            if v != v:
                return -2
            if v > hi:
                hi = v
        if hi == -np.inf:
            return -1
        delta = near * max(1.0, abs(hi), abs(low[t]))
        saved_h = np.empty(max_requeries, dtype=np.int64)
        saved_0 = np.empty(max_requeries)
        saved_1 = np.empty(max_requeries)
        nsaved = 0
        result = -3
        for attempt in range(max_requeries + 1):
            thr = hi - delta
            s = 0
            while s < n1 and not (l1[t, s] >= thr):
                s += 1
            off = 0
            while not (l0[s, t, off] >= thr):
                off += 1
            if l0[s, t, off] != hi:
                result = -2
                break
            h = s * fanout + off
            if not ((use_anti and anti[h] > 0) or (use_taken and taken[domains[h]])):
                result = h
                break
            if attempt == max_requeries:
                break
            saved_h[nsaved], saved_0[nsaved], saved_1[nsaved] = h, l0[s, t, off], l1[t, s]
            nsaved += 1
            requeries[0] += 1
            l0[s, t, off] = -np.inf
            l1[t, s] = block_max(l0, s, t)
            hi = -np.inf
            for v in l1[t]:
                if v > hi:
                    hi = v
            if hi == -np.inf:
                result = -1
                break
        for i in range(nsaved - 1, -1, -1):
            h = saved_h[i]
            l0[h // fanout, t, h % fanout] = saved_0[i]
            l1[t, h // fanout] = saved_1[i]
        return result

    _update, _pick = update, pick


def _build() -> None:
    _compile()
    _warm()


_compiler = CompileOnce(_build)


def available() -> bool:
    """Compile (or load from cache) the kernels once; False when numba is missing or disabled."""
    return _compiler.ready() and _update is not None


def _warm() -> None:
    """Trigger compilation with the argument types the index uses."""
    assert _update is not None and _pick is not None
    l0, l1 = np.full((1, 1, 2), -np.inf), np.full((1, 1), -np.inf)
    i8, i32, i64 = np.zeros(1, dtype=np.int8), np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.int64)
    f1, f2, f3 = np.zeros(1), np.ones((1, 1)), np.ones((1, 1, 1))
    _update(0, 1, f2, i8, i32, i32, True, True, i64, f3, f2, f2, f2, f2, f2, np.ones((1, 1), dtype=bool),
            f1, False, True, f2, True, l0, l1, 2)
    _pick(0, l0, l1, 2, f1, 1e-9, i32, False, np.zeros(1, dtype=bool), i32, False, 4, i64)


def update() -> Callable[..., None]:
    """The compiled host update (call `available()` first)."""
    assert _update is not None
    return _update


def pick() -> Callable[..., int]:
    """The compiled query (call `available()` first)."""
    assert _pick is not None
    return _pick
