"""Preemption: which lower-class workloads to evict so that a request fits on one host.

Pure and vectorized over the placement state (arrays in, indices out, no I/O). Priority classes
are ranked spot < low < normal < high < system; a request may only evict workloads of a strictly
lower class. Among the ways to make room the policy prefers, in order:

1. the lowest classes: only spot workloads if that is enough anywhere, else spot and low, ...;
2. the fewest victims (one host; exact in one resource dimension: largest first, then the set is
   made irreducible by dropping every victim the others make unnecessary);
3. the least capacity taken away (sum of the victims' dominant shares), then the lowest host index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIORITY_CLASSES: tuple[str, ...] = ("spot", "low", "normal", "high", "system")  # ascending rank
DEFAULT_CLASS = "normal"
EPS = 1e-9


def class_rank(name: str) -> int:
    """The rank of a priority class (ValueError for an unknown name: callers validate first)."""
    return PRIORITY_CLASSES.index(name)


@dataclass(frozen=True)
class Preemption:
    """Evict `victims` (indices into the candidate arrays) from host index `host`; `max_rank`: the
    highest class rank among them."""

    host: int
    victims: tuple[int, ...]
    max_rank: int


def choose_victims(free: np.ndarray, capacity: np.ndarray, eligible: np.ndarray, demand: np.ndarray,
                   victim_host: np.ndarray, victim_demand: np.ndarray, victim_rank: np.ndarray,
                   request_rank: int, *, count: np.ndarray | None = None,
                   max_count: np.ndarray | None = None) -> Preemption | None:
    """The smallest eviction that lets `demand` fit on one eligible host, or None.

    free, capacity: (R, H) allocatable free and capacity per resource and host; eligible: (H,) the
    hosts every placement filter but capacity accepts; demand: (R,); victim_host (n,) host index,
    victim_demand (R, n), victim_rank (n,) class rank of each evictable candidate. count and
    max_count (H,): the hosts' workload counts and limits (0 = none), when limits matter.
    """
    hosts = np.asarray(victim_host, dtype=np.int64)
    ranks = np.asarray(victim_rank, dtype=np.int64)
    vd = np.asarray(victim_demand, dtype=np.float64).reshape(len(demand), -1)
    usable = (ranks < request_rank) & (hosts >= 0)
    usable[usable] &= np.asarray(eligible, dtype=bool)[hosts[usable]]
    for threshold in sorted(set(ranks[usable].tolist())):
        pick = _best_at(free, capacity, demand, hosts, vd, np.flatnonzero(usable & (ranks <= threshold)),
                        count, max_count)
        if pick is not None:
            h, chosen = pick
            top = max((int(ranks[i]) for i in chosen), default=-1)
            return Preemption(h, tuple(int(i) for i in chosen), top)
    return None


def _best_at(free: np.ndarray, capacity: np.ndarray, demand: np.ndarray, hosts: np.ndarray,
             vd: np.ndarray, cand: np.ndarray, count: np.ndarray | None,
             max_count: np.ndarray | None) -> tuple[int, list[int]] | None:
    """Per host, the largest-first prefix of `cand` that makes room (one pass of segmented cumulative
    sums over all hosts at once); then the best host's set made irreducible."""
    if cand.size == 0:
        return None
    h = hosts[cand]
    cap = np.maximum(capacity[:, h], EPS)
    share = (vd[:, cand] / cap).max(axis=0)  # each candidate's dominant share of its host
    order = np.lexsort((-share, h))  # by host, largest first
    cand, h, share = cand[order], h[order], share[order]
    cum = np.cumsum(vd[:, cand], axis=1)
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    seg = np.repeat(starts, np.diff(np.r_[starts, h.size]))
    before = np.where(seg > 0, cum[:, np.maximum(seg - 1, 0)], 0.0)
    freed = cum - before  # per candidate: what its host frees with it and the larger ones before it
    fits = (free[:, h] + freed + EPS >= demand[:, None]).all(axis=0)
    k = np.arange(h.size) - seg + 1  # victims in the prefix
    if max_count is not None and count is not None:
        lim = max_count[h]
        fits &= (lim == 0) | (count[h] - k < lim)
    if not fits.any():
        return None
    # the first fitting prefix of each host: its size, then its shares (less taken is better)
    first = np.flatnonzero(fits)
    first = first[np.r_[True, seg[first][1:] != seg[first][:-1]]]
    taken = np.cumsum(share)
    taken_at = taken[first] - np.where(seg[first] > 0, taken[np.maximum(seg[first] - 1, 0)], 0.0)
    best = first[np.lexsort((h[first], taken_at, k[first]))[0]]
    s0 = int(seg[best])
    chosen = [int(c) for c in cand[s0: best + 1]]
    host = int(h[best])
    return host, _irreducible(free[:, host], demand, vd, chosen, count, max_count, host)


def _irreducible(free: np.ndarray, demand: np.ndarray, vd: np.ndarray, chosen: list[int],
                 count: np.ndarray | None, max_count: np.ndarray | None, host: int) -> list[int]:
    """Drop, largest first, every victim whose eviction the others already make unnecessary."""
    keep = list(chosen)
    for c in list(chosen):
        rest = [x for x in keep if x != c]
        room = free + vd[:, rest].sum(axis=1)
        ok = bool((room + EPS >= demand).all())
        if ok and max_count is not None and count is not None and max_count[host] > 0:
            ok = count[host] - len(rest) < max_count[host]
        if ok:
            keep = rest
    return keep
