"""Compiled hot paths of the placement index (numba), with the numpy code as the fallback.

A host update and a tree query are a dozen numpy calls each on arrays of a few dozen values, so
numpy's per-call overhead, not arithmetic, sets the placement rate. These kernels do the same work
in one call each, with the same IEEE operations in the same order as the numpy path (and hence as
the best-fit scorer): (alloc + demand) / capacity per scored resource, summed left to right,
divided by the count; the capacity filter's test `capacity - alloc < demand - 1e-9` rejects
(so a NaN passes, as in the filter). No fastmath.

`available()` is False when numba is not installed (the optional `fast` extra) or when
POOLVISOR_NO_JIT=1; the index then uses numpy for everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from poolvisor.jit import CompileOnce

_update: Callable[..., None] | None = None
_build_row: Callable[..., None] | None = None
_pick: Callable[..., int] | None = None
_rank: Callable[..., int] | None = None


def block_max(l0: Any, blk: int, t: int) -> float:
    m = -np.inf
    for v in l0[blk, t]:
        if v != v:  # NaN propagates, like ndarray.max
            return v
        if v > m:
            m = v
    return m


def block_min(l0: Any, blk: int, t: int) -> float:
    """Min over the block's candidate leaves (+inf when none; NaN propagates)."""
    m = np.inf
    for v in l0[blk, t]:
        if v != v:
            return v
        if v != -np.inf and v < m:
            m = v
    return m


def group_max(l1: Any, t: int, j: int, g2: int) -> float:
    """Level 2: max over blocks [j*g2, (j+1)*g2) of row t (NaN propagates, like ndarray.max)."""
    m = -np.inf
    for s in range(j * g2, min((j + 1) * g2, l1.shape[1])):
        v = l1[t, s]
        if v != v:
            return v
        if v > m:
            m = v
    return m


def group_min(l1min: Any, t: int, j: int, g2: int) -> float:
    """Level 2: min of the blocks' candidate minima (+inf when none; NaN propagates)."""
    m = np.inf
    for s in range(j * g2, min((j + 1) * g2, l1min.shape[1])):
        v = l1min[t, s]
        if v != v:
            return v
        if v < m:
            m = v
    return m


def set_block(l1: Any, l1min: Any, l2: Any, l2min: Any, t: int, blk: int, g2: int, hi: float,
              lo: float) -> None:
    """Block blk of row t := (max hi, candidate min lo), keeping its level-2 group's max and min
    (re-scanned only when the group's extreme block or a NaN says so)."""
    old_hi, old_lo = l1[t, blk], l1min[t, blk]
    l1[t, blk], l1min[t, blk] = hi, lo
    j = blk // g2
    top, bot = l2[t, j], l2min[t, j]
    if hi != hi or old_hi != old_hi or top != top:
        l2[t, j] = group_max(l1, t, j, g2)
    elif hi > top:
        l2[t, j] = hi
    elif old_hi == top and hi != top:
        l2[t, j] = group_max(l1, t, j, g2)
    if lo != lo or old_lo != old_lo or bot != bot:
        l2min[t, j] = group_min(l1min, t, j, g2)
    elif lo < bot:
        l2min[t, j] = lo
    elif old_lo == bot and lo != bot:
        l2min[t, j] = group_min(l1min, t, j, g2)


def exclude_leaf(l0: Any, l1: Any, l1min: Any, l2: Any, l2min: Any, t: int, h: int, fanout: int, g2: int,
                 saved: Any, i: int) -> None:
    """Leaf h of row t := -inf for one query, its old leaf, block and group extremes into saved[i]
    (restore_leaf puts them back; several in reverse order of exclusion)."""
    s, off = h // fanout, h % fanout
    j = s // g2
    saved[i, 0], saved[i, 1], saved[i, 2] = l0[s, t, off], l1[t, s], l1min[t, s]
    saved[i, 3], saved[i, 4] = l2[t, j], l2min[t, j]
    l0[s, t, off] = -np.inf
    set_block(l1, l1min, l2, l2min, t, s, g2, block_max(l0, s, t), block_min(l0, s, t))


def restore_leaf(l0: Any, l1: Any, l1min: Any, l2: Any, l2min: Any, t: int, h: int, fanout: int, g2: int,
                 saved: Any, i: int) -> None:
    s = h // fanout
    j = s // g2
    l0[s, t, h % fanout], l1[t, s], l1min[t, s] = saved[i, 0], saved[i, 1], saved[i, 2]
    l2[t, j], l2min[t, j] = saved[i, 3], saved[i, 4]


def leaf_update(h: int, rows: int, alloc: Any, state: Any, max_count: Any, count: Any, check_state: bool,
                check_count: bool, pattern_of: Any, valid: Any, cap_t: Any, safe_t: Any, demand: Any,
                tol: Any, mask_t: Any, low: Any, neg_sign: bool, check_cap: bool, l0: Any, l1x: Any,
                l2x: Any, leaves: Any, ptol: Any, check_scarce: bool, s_l0: Any, s_l1x: Any,
                s_l2x: Any, s_leaves: Any, fanout: int, g2: int) -> None:
    """Leaf h of rows [0, rows): host-local filters and the best-fit score, then the block's
    maximum and candidate minimum and the row's candidate count. With `check_scarce`, a host
    passing the filters that has more than ptol[t, r] free of some resource r (a scarce resource
    class t leaves unused; the keep-scarce-free scorer's test) goes to the spare row s_* instead.
    l1x = [block maxima, block candidate minima], l2x the same per group of g2 blocks (forest.py)."""
    blk, off = h // fanout, h % fanout
    r_n = alloc.shape[0]
    ok_host = not (check_state and state[h] != 0) and not (
        check_count and max_count[h] > 0 and max_count[h] <= count[h])
    p = pattern_of[h]
    for t in range(rows):
        leaf = -np.inf
        sleaf = -np.inf
        if ok_host:
            total = 0.0
            n_scored = 0
            for r in range(r_n):
                if valid[p, t, r] != 0.0:
                    x = (alloc[r, h] + demand[t, r]) / safe_t[h, r]
                    if x == x:  # a NaN fraction is not scored, as in the scorer
                        total += x
                        n_scored += 1
            score = total / max(n_scored, 1)
            if neg_sign:
                score = -score
            if score < low[t]:
                low[t] = score
            ok = mask_t[h, t]
            if ok and check_cap:
                for r in range(r_n):
                    if cap_t[h, r] - alloc[r, h] < tol[t, r]:  # the filter's test: NaN passes
                        ok = False
                        break
            if ok and check_scarce:
                for r in range(r_n):
                    if cap_t[h, r] - alloc[r, h] > ptol[t, r]:  # the scorer's test: NaN is not free
                        ok = False
                        sleaf = score
                        break
            if ok:
                leaf = score
        if check_scarce and (sleaf != -np.inf or s_l0[blk, t, off] != -np.inf):
            set_leaf(s_l0, s_l1x[0], s_l1x[1], s_l2x[0], s_l2x[1], s_leaves, blk, t, off, sleaf, g2)
        set_leaf(l0, l1x[0], l1x[1], l2x[0], l2x[1], leaves, blk, t, off, leaf, g2)


def set_leaf(l0: Any, l1: Any, l1min: Any, l2: Any, l2min: Any, leaves: Any, blk: int, t: int, off: int,
             new: float, g2: int) -> None:
    """Leaf (blk, t, off) := new, keeping the block's maximum, candidate minimum and the row's
    candidate count (and level 2); the block is re-scanned only when its extreme leaves or a NaN
    say so."""
    old = l0[blk, t, off]
    if old != -np.inf:
        leaves[t] -= 1
    if new != -np.inf:
        leaves[t] += 1
    l0[blk, t, off] = new
    hi, lo = l1[t, blk], l1min[t, blk]
    if new != new or old != old or hi != hi or lo != lo:  # NaN: as the full scan propagates it
        nhi, nlo = block_max(l0, blk, t), block_min(l0, blk, t)
    else:
        nhi, nlo = hi, lo
        if new > hi:
            nhi = new
        elif old == hi and new != hi:  # the maximum may have left
            nhi = block_max(l0, blk, t)
        if new != -np.inf and new < lo:
            nlo = new
        elif old == lo and new != lo:  # the candidate minimum may have left
            nlo = block_min(l0, blk, t)
    if not (nhi == hi and nlo == lo):
        set_block(l1, l1min, l2, l2min, t, blk, g2, nhi, nlo)


def row_build(t: int, n: int, alloc: Any, state: Any, max_count: Any, count: Any, check_state: bool,
              check_count: bool, pattern_of: Any, valid: Any, cap_t: Any, safe_t: Any, demand: Any,
              tol: Any, mask_t: Any, low: Any, neg_sign: bool, check_cap: bool, l0: Any, l1x: Any,
              l2x: Any, leaves: Any, ptol: Any, check_scarce: bool, s_l0: Any, s_l1x: Any,
              s_l2x: Any, s_leaves: Any, fanout: int, g2: int) -> None:
    """Every leaf of row t (a class just admitted) in one pass over the hosts, with leaf_update's
    operations for one row (written out again here: a shared per-leaf helper costs numba 2-3x),
    then each block's maximum and candidate minimum and the row's candidate counts. low[t] is the
    lowest score over all hosts, NaN ignored (0.0 without hosts), as np.fmin.reduce in the numpy
    build. Leaves past the last host are -inf. test_compiled_row_build_equals_the_numpy_build
    holds the two builds bit-equal."""
    l1, l1min, s_l1, s_l1min = l1x[0], l1x[1], s_l1x[0], s_l1x[1]
    r_n = alloc.shape[0]
    lowest = np.inf
    scored = False
    n_leaves = 0
    n_spare = 0
    for blk in range(l0.shape[0]):
        for off in range(fanout):
            h = blk * fanout + off
            leaf = -np.inf
            sleaf = -np.inf
            if h < n:
                p = pattern_of[h]
                total = 0.0
                n_scored = 0
                for r in range(r_n):
                    if valid[p, t, r] != 0.0:
                        x = (alloc[r, h] + demand[t, r]) / safe_t[h, r]
                        if x == x:  # a NaN fraction is not scored, as in the scorer
                            total += x
                            n_scored += 1
                score = total / max(n_scored, 1)
                if neg_sign:
                    score = -score
                if score == score:
                    scored = True
                    if score < lowest:
                        lowest = score
                ok = mask_t[h, t]
                if (check_state and state[h] != 0) or (
                        check_count and max_count[h] > 0 and max_count[h] <= count[h]):
                    ok = False
                if ok and check_cap:
                    for r in range(r_n):
                        if cap_t[h, r] - alloc[r, h] < tol[t, r]:  # the filter's test: NaN passes
                            ok = False
                            break
                if ok and check_scarce:
                    for r in range(r_n):
                        if cap_t[h, r] - alloc[r, h] > ptol[t, r]:  # the scorer's test
                            ok = False
                            sleaf = score
                            break
                if ok:
                    leaf = score
            l0[blk, t, off] = leaf
            if leaf != -np.inf:
                n_leaves += 1
            if check_scarce:
                s_l0[blk, t, off] = sleaf
                if sleaf != -np.inf:
                    n_spare += 1
        l1[t, blk] = block_max(l0, blk, t)
        l1min[t, blk] = block_min(l0, blk, t)
        if check_scarce:
            s_l1[t, blk] = block_max(s_l0, blk, t)
            s_l1min[t, blk] = block_min(s_l0, blk, t)
    for j in range(l2x.shape[2]):
        l2x[0, t, j], l2x[1, t, j] = group_max(l1, t, j, g2), group_min(l1min, t, j, g2)
        if check_scarce:
            s_l2x[0, t, j], s_l2x[1, t, j] = group_max(s_l1, t, j, g2), group_min(s_l1min, t, j, g2)
    leaves[t] = n_leaves
    if check_scarce:
        s_leaves[t] = n_spare
    low[t] = 0.0 if n == 0 else lowest if scored else np.nan


def tree_pick(t: int, l0: Any, l1: Any, fanout: int, low: Any, near: float, anti: Any, use_anti: bool,
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


def record(l1: Any, l2: Any, g2: int, t: int, rec_v: Any, rec_i: Any) -> float:
    """The len(rec_v) largest block maxima of row t, by (value desc, block asc), into rec_v/rec_i;
    returns a bound on every block not recorded (-inf when all fit). A group of blocks whose
    maximum (l2) cannot enter a full record is skipped: none of its blocks would (no NaN here:
    ranked has returned before on one)."""
    m = rec_v.size
    n = 0
    n1 = l1.shape[1]
    for g in range(l2.shape[1]):
        if n == m and not (l2[t, g] > rec_v[m - 1]):
            continue
        for i in range(g * g2, min((g + 1) * g2, n1)):
            v = l1[t, i]
            if n < m or v > rec_v[m - 1]:
                j = n if n < m else m - 1
                while j > 0 and rec_v[j - 1] < v:  # equal values keep block order
                    rec_v[j], rec_i[j] = rec_v[j - 1], rec_i[j - 1]
                    j -= 1
                rec_v[j], rec_i[j] = v, i
                if n < m:
                    n += 1
    if n < m:
        for j in range(n, m):
            rec_v[j], rec_i[j] = -np.inf, -1
        return -np.inf
    return rec_v[m - 1]


def ranked(t: int, k: int, l0: Any, l1: Any, l1min: Any, l2: Any, l2min: Any, fanout: int, g2: int,
           weight: float, limit: int, hosts: Any, values: Any, bounds: Any, lo_ext: float, hi_ext: float,
           post: float) -> int:
    """`top` on the row as it is (exclusions applied).

    The next maximum after each exclusion comes from a record of the k + 2 largest block
    maxima (one pass over the groups that can enter it), valid while its head stays above every
    block it does not hold. The row's lowest candidate is the min over level 2. A group maximum
    skips its blocks only when it is not above the record's last entry, so the walk's exclusions
    may leave level 2 too high (an upper bound) without changing a result."""
    n1 = l1.shape[1]
    lo = np.inf
    for v in l2min[t]:  # a NaN leaf makes its block's and its group's max and min NaN
        if v != v:
            return -2
        if v < lo:
            lo = v
    if lo == np.inf:
        return 0
    lo = min(lo, lo_ext)
    rec_v = np.empty(k + 2)
    rec_i = np.empty(k + 2, dtype=np.int64)
    floor = record(l1, l2, g2, t, rec_v, rec_i)
    hi = max(rec_v[0], hi_ext)
    bounds[0], bounds[1] = lo, hi
    span = hi - lo
    flat = span <= 1e-12
    saved = np.empty((limit, 2))
    kept_h = np.empty(limit, dtype=np.int64)
    kept_v = np.empty(limit)
    kept_t = np.empty(limit)
    kept = 0
    result = 0
    while True:
        if flat:  # every score normalizes to 0: the lowest-indexed candidates
            if kept == k:
                break
            s = 0
            while s < n1 and not (l1[t, s] >= lo):
                s += 1
            if s == n1:
                break
            thr = lo
        else:  # the first block holding the maximum, and its first leaf at the maximum
            if rec_v[0] <= floor:
                floor = record(l1, l2, g2, t, rec_v, rec_i)
            if rec_v[0] == -np.inf:
                break
            s, thr = rec_i[0], rec_v[0]
        off = 0
        while not (l0[s, t, off] >= thr):
            off += 1
        h = s * fanout + off
        v = l0[s, t, off]
        tot = post if flat else weight * ((v - lo) / span) + post
        if kept >= k and not flat:
            tk, hk = kept_t[k - 1], kept_h[k - 1]
            if (tot < tk or (tot == tk and h > hk)) and \
                    weight * ((np.nextafter(v, -np.inf) - lo) / span) + post < tk:
                break
        if kept == limit:
            result = -2
            break
        i = kept  # insert, keeping (total descending, host ascending)
        while i > 0 and (kept_t[i - 1] < tot or (kept_t[i - 1] == tot and kept_h[i - 1] > h)):
            kept_h[i], kept_v[i], kept_t[i] = kept_h[i - 1], kept_v[i - 1], kept_t[i - 1]
            i -= 1
        kept_h[i], kept_v[i], kept_t[i] = h, v, tot
        hosts[kept] = h  # exclusion order, for the restore below
        # the walk reads only leaves, block maxima and (through record) group maxima as upper
        # bounds, which an exclusion can only lower: leave the minima and level 2 as they are
        saved[kept, 0], saved[kept, 1] = v, l1[t, s]
        l0[s, t, off] = -np.inf
        l1[t, s] = block_max(l0, s, t)
        kept += 1
        if not flat:  # block s is the record's head: update it and let it sink into place
            rec_v[0] = l1[t, s]
            j = 0
            while j + 1 < rec_v.size and (rec_v[j + 1] > rec_v[j] or (
                    rec_v[j + 1] == rec_v[j] and rec_i[j + 1] < rec_i[j])):
                rec_v[j], rec_v[j + 1] = rec_v[j + 1], rec_v[j]
                rec_i[j], rec_i[j + 1] = rec_i[j + 1], rec_i[j]
                j += 1
    for i in range(kept - 1, -1, -1):
        h = hosts[i]
        s = h // fanout
        l0[s, t, h % fanout], l1[t, s] = saved[i, 0], saved[i, 1]
    if result < 0:
        return result
    found = min(k, kept)
    for i in range(found):
        hosts[i], values[i] = kept_h[i], kept_v[i]
    return found


def exclude_hosts(t: int, excl: Any, l0: Any, l1: Any, l1min: Any, l2: Any, l2min: Any, fanout: int,
                  g2: int, gone: Any, gone_h: Any) -> int:
    """Exclude the candidates among `excl` from row t (exclude_leaf); returns how many, their
    hosts in gone_h in exclusion order (restore_hosts undoes it)."""
    ngone = 0
    for i in range(excl.size):
        h = excl[i]
        if l0[h // fanout, t, h % fanout] != -np.inf:
            gone_h[ngone] = h
            exclude_leaf(l0, l1, l1min, l2, l2min, t, h, fanout, g2, gone, ngone)
            ngone += 1
    return ngone


def restore_hosts(t: int, ngone: int, l0: Any, l1: Any, l1min: Any, l2: Any, l2min: Any, fanout: int,
                  g2: int, gone: Any, gone_h: Any) -> None:
    for i in range(ngone - 1, -1, -1):
        restore_leaf(l0, l1, l1min, l2, l2min, t, gone_h[i], fanout, g2, gone, i)


def tree_top(t: int, k: int, l0: Any, l1x: Any, l2x: Any, fanout: int, g2: int, weight: float, limit: int,
             excl: Any, hosts: Any, values: Any, bounds: Any, rejected: Any, lo_ext: float, hi_ext: float,
             post: float) -> int:
    """Row t's k best candidates in the pipeline's order into hosts/values (raw scores), and the
    candidates' lowest and highest raw score into bounds, with the hosts `excl` (those a
    request-level filter rejects) left out; how many of them were candidates goes to
    rejected[0]. Returns how many were found, or -2 when the answer needs the exact row scan (a
    NaN, or more than `limit` hosts tied after normalization). The row is left as it was.

    The pipeline ranks by total = weight * (raw - lo) / (hi - lo) + post (every other scorer is
    constant over the row: 0, or keep-scarce-free's weight when candidates outside the row strand
    a scarce resource; `lo_ext`/`hi_ext` are those candidates' lowest and highest raw score, +inf
    and -inf when there are none), then host index. Leaves are taken in tree order (raw
    descending, index ascending) and kept sorted by that key; the walk stops at the first leaf x
    that ranks after the k-th kept one when nothing below it can catch up: every later leaf has
    raw == raw(x) and a higher index, or raw <= nextafter(raw(x), -inf), whose total bounds
    theirs (rounding is monotone).
    When hi - lo <= 1e-12 the pipeline's scores are all 0: the k lowest-indexed candidates."""
    l1, l1min, l2, l2min = l1x[0], l1x[1], l2x[0], l2x[1]
    gone = np.empty((excl.size, 5))
    gone_h = np.empty(excl.size, dtype=np.int64)
    ngone = exclude_hosts(t, excl, l0, l1, l1min, l2, l2min, fanout, g2, gone, gone_h)
    rejected[0] = ngone
    result = ranked(t, k, l0, l1, l1min, l2, l2min, fanout, g2, weight, limit, hosts, values, bounds,
                    lo_ext, hi_ext, post)
    restore_hosts(t, ngone, l0, l1, l1min, l2, l2min, fanout, g2, gone, gone_h)
    return result


def spare_bounds(t: int, fanout: int, g2: int, excl: Any, l0: Any, l1x: Any, l2x: Any, bounds: Any) -> int:
    """Lowest and highest candidate leaf of row t without the hosts `excl` into bounds (+inf and
    -inf when none; NaN propagates), from level 2; returns how many of `excl` were candidates.
    The row is left as it was. (The spare rows of keep-scarce-free, see PlacementIndex.rank.)"""
    l1, l1min, l2, l2min = l1x[0], l1x[1], l2x[0], l2x[1]
    gone = np.empty((excl.size, 5))
    gone_h = np.empty(excl.size, dtype=np.int64)
    ngone = exclude_hosts(t, excl, l0, l1, l1min, l2, l2min, fanout, g2, gone, gone_h)
    lo, hi = np.inf, -np.inf
    for v in l2min[t]:
        if v != v:
            lo = v
            break
        if v < lo:
            lo = v
    for v in l2[t]:
        if v != v:
            hi = v
            break
        if v > hi:
            hi = v
    bounds[0], bounds[1] = lo, hi
    restore_hosts(t, ngone, l0, l1, l1min, l2, l2min, fanout, g2, gone, gone_h)
    return ngone


def served_rank(h: int, rows: int, alloc: Any, state: Any, max_count: Any, count: Any, check_state: bool,
                check_count: bool, pattern_of: Any, valid: Any, cap_t: Any, safe_t: Any, demand: Any,
                tol: Any, mask_t: Any, low: Any, neg_sign: bool, check_cap: bool, l0: Any, l1x: Any,
                l2x: Any, leaves: Any, ptol: Any, check_scarce: bool, s_l0: Any, s_l1x: Any,
                s_l2x: Any, s_leaves: Any, fanout: int, g2: int, t: int, k: int, weight: float, limit: int,
                excl: Any, hosts: Any, values: Any, fout: Any, iout: Any, scarce_weight: float) -> int:
    """One served ranking in one compiled call (each call's dispatch costs more than its work):
    the pending leaf update of host h (none when h < 0; leaf_update's arguments), then class t's
    spare-row bounds without `excl` (spare_bounds, when check_scarce and the spare row is not
    empty) and its top k (tree_top, with the spare bounds widening the normalization and
    keep-scarce-free's weight added to every total when some candidate strands a scarce resource).

    Out: fout[0:2] the candidates' (lo, hi), fout[2:4] the spare bounds (+inf, -inf when none);
    iout[0] excluded row candidates, iout[1] spare-row hosts, iout[2] excluded spare hosts.
    Returns tree_top's result, or -4 when some spare host has a NaN score (the exact pipeline
    ranks). PlacementIndex.rank without the JIT does the same through numpy (_spare_bounds,
    _top_tree); test_compiled_served_ranking_equals_the_numpy_ranking holds the two equal."""
    if h >= 0:
        leaf_update(h, rows, alloc, state, max_count, count, check_state, check_count, pattern_of, valid,
                    cap_t, safe_t, demand, tol, mask_t, low, neg_sign, check_cap, l0, l1x, l2x, leaves,
                    ptol, check_scarce, s_l0, s_l1x, s_l2x, s_leaves, fanout, g2)
    passed, removed = 0, 0
    fout[2], fout[3] = np.inf, -np.inf
    if check_scarce and s_leaves[t] > 0:
        removed = spare_bounds(t, fanout, g2, excl, s_l0, s_l1x, s_l2x, fout[2:4])
        passed = s_leaves[t]
    iout[1], iout[2] = passed, removed
    s_lo, s_hi = fout[2], fout[3]
    stranding = passed - removed
    if stranding and not (s_lo == s_lo and s_hi == s_hi):
        return -4
    post = scarce_weight * 1.0 if stranding else 0.0
    return tree_top(t, k, l0, l1x, l2x, fanout, g2, weight, limit, excl, hosts, values, fout, iout, s_lo,
                    s_hi, post)


def _compile() -> None:
    """Replace the plain functions above by their compiled versions (module globals, so that
    numba resolves the calls between them at compile time and can cache them all on disk)."""
    global _update, _pick, _build_row, _rank
    from numba import njit

    jit = njit(cache=True, nogil=True)
    g = globals()
    for name in ("block_max", "block_min", "group_max", "group_min", "set_block", "exclude_leaf",
                 "restore_leaf", "set_leaf", "record", "ranked", "exclude_hosts", "restore_hosts",
                 "leaf_update", "tree_top", "spare_bounds"):
        g[name] = jit(g[name])
    _update, _pick, _build_row, _rank = leaf_update, jit(tree_pick), jit(row_build), jit(served_rank)


def _build() -> None:
    _compile()
    _warm()


_compiler = CompileOnce(_build)


def available() -> bool:
    """Compile (or load from cache) the kernels once; False when numba is missing or disabled."""
    return _compiler.ready() and _update is not None


def loaded() -> bool:
    """The kernels are compiled in this process already (a server builds them at start, jit.warm):
    True without compiling or importing numba."""
    return _compiler.built and _update is not None


def _warm() -> None:
    """Trigger compilation with the argument types the index uses."""
    assert _update is not None and _pick is not None and _rank is not None and _build_row is not None
    l0, l1, l1min = np.full((1, 1, 2), -np.inf), np.full((1, 1), -np.inf), np.full((1, 1), np.inf)
    l1x = np.stack([l1, l1min])
    i8, i32, i64 = np.zeros(1, dtype=np.int8), np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.int64)
    f1, f2, f3 = np.zeros(1), np.ones((1, 1)), np.ones((1, 1, 1))
    # leaf_update and row_build take the same arguments: (host or row, rows or hosts, ...)
    args = (0, 1, f2, i8, i32, i32, True, True, i64, f3, f2, f2, f2, f2, np.ones((1, 1), dtype=bool), f1,
            False, True, l0, l1x, l1x.copy(), np.zeros(1, dtype=np.int64), f2, True, l0.copy(), l1x.copy(),
            l1x.copy(), np.zeros(1, dtype=np.int64), 2, 2)
    _update(*args)
    _build_row(*args)
    _pick(0, l0, l1, 2, f1, 1e-9, i32, False, np.zeros(1, dtype=bool), i32, False, 4, i64)
    _rank(*args, 0, 3, 1.0, 8, np.zeros(1, dtype=np.int64), np.zeros(8, dtype=np.int64), np.zeros(8),
          np.zeros(4), np.zeros(3, dtype=np.int64), 1.0)


def update() -> Callable[..., None]:
    """The compiled host update (call `available()` first)."""
    assert _update is not None
    return _update


def build_row() -> Callable[..., None]:
    """The compiled row build for a newly admitted class (call `available()` first)."""
    assert _build_row is not None
    return _build_row


def pick() -> Callable[..., int]:
    """The compiled query (call `available()` first)."""
    assert _pick is not None
    return _pick


def rank() -> Callable[..., int]:
    """The compiled served ranking: pending update, spare bounds and top k (`available()` first)."""
    assert _rank is not None
    return _rank
