"""Balancing limits: which planned migrations may start now, and whether a move is worth it.

Pure functions over numpy arrays, shared by the live controller (services/controller.py) and any
simulator that wants the same rules:

* :func:`imbalance`: the pool's imbalance, the standard deviation of host load (measured use over
  capacity) per resource across the active hosts, averaged over the resources;
* :func:`move_gains`: for M candidate single moves at once, how much each lowers that imbalance;
* :func:`admit`: the limits: a cool-down per workload, no ping-pong (a workload never returns to a
  host it left within the cool-down), a minimum gain net of the migration's cost (memory over
  bandwidth) for the moves that must pay for themselves, and concurrent migration slots per host
  (in and out count alike) and per pool. Slots go round-robin over the source hosts (each
  source's first move before any source's second), so one draining or overloaded host cannot
  take every slot of the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: why a move was held back (``admit``'s reason codes; "" = admitted)
COOLDOWN, PING_PONG, LOW_GAIN, HOST_BUSY, POOL_BUSY = (
    "cool-down", "ping-pong", "gain below the minimum", "host migration slots full",
    "pool migration slots full")


@dataclass(frozen=True)
class Limits:
    """``per_host``: concurrent migrations touching one host (in + out); ``per_pool``: in one pool;
    ``cooldown_s``: a workload that moved waits this long before moving again and never returns
    to a host it left within it; ``min_gain``: the imbalance drop (std-dev of host load, 0..1)
    a balancing move must bring net of its cost; ``cost_per_s``: imbalance units one second of
    migration costs (a move of ``mem`` MiB at ``bw`` MiB/s costs ``cost_per_s * mem / bw``)."""

    per_host: int = 2
    per_pool: int = 4
    cooldown_s: float = 900.0
    min_gain: float = 0.01
    cost_per_s: float = 0.0005

    def __post_init__(self) -> None:
        if self.per_host < 1 or self.per_pool < 1:
            raise ValueError("migration slots per host and per pool must be >= 1")
        if not (self.cooldown_s >= 0 and self.min_gain >= 0 and self.cost_per_s >= 0):
            raise ValueError("cool-down, minimum gain and cost must be >= 0")


def imbalance(load: np.ndarray, active: np.ndarray) -> float:
    """Mean over resources of the std-dev of ``load`` (R, H fractions) over the ``active`` hosts."""
    if not active.any():
        return 0.0
    return float(load[:, active].std(axis=1).mean())


def move_gains(load: np.ndarray, active: np.ndarray, w_load: np.ndarray, src: np.ndarray,
               dst: np.ndarray) -> np.ndarray:
    """(M,) imbalance before minus after each single move m, all at once: the workload leaves
    ``src[m]`` and joins ``dst[m]``. ``w_load`` is its load as a fraction of each host's capacity:
    (2, R, M) (of the source's, of the destination's) or (R, M) when the hosts are alike."""
    m = src.size
    if m == 0:
        return np.zeros(0)
    before = imbalance(load, active)
    after = np.broadcast_to(load, (m, *load.shape)).copy()  # (M, R, H)
    idx = np.arange(m)
    w_src, w_dst = (w_load[0], w_load[1]) if w_load.ndim == 3 else (w_load, w_load)
    after[idx, :, src] -= w_src.T
    after[idx, :, dst] += w_dst.T
    act = np.broadcast_to(active, (m, active.size)).copy()
    act[idx, dst] = True  # a move makes its destination active
    n = act.sum(axis=1)  # (M,)
    a = after * act[:, None, :]
    mean = a.sum(axis=2) / n[:, None]
    var = ((a - mean[:, :, None]) ** 2 * act[:, None, :]).sum(axis=2) / n[:, None]
    return before - np.sqrt(var).mean(axis=1)


def admit(src: np.ndarray, dst: np.ndarray, *, since_moved: np.ndarray, returns: np.ndarray,
          net_gain: np.ndarray, needs_gain: np.ndarray, busy: np.ndarray, pool_busy: int,
          limits: Limits) -> tuple[np.ndarray, list[str]]:
    """Which of M planned moves (in plan order) start now, and why each other one does not.

    ``since_moved[m]``: seconds since the workload's last migration (inf: never); ``returns[m]``:
    ``dst[m]`` is a host the workload left within the cool-down; ``net_gain[m]``: imbalance gain
    minus migration cost; ``needs_gain[m]``: the move must pay for itself (balancing, not an
    evacuation); ``busy[h]``: migrations in flight touching host h; ``pool_busy``: in the pool.
    Returns (admitted mask, reason per move: "" when admitted)."""
    m = src.size
    why = np.full(m, "", dtype=object)
    why[needs_gain & (net_gain < limits.min_gain)] = LOW_GAIN
    why[returns] = PING_PONG
    why[since_moved < limits.cooldown_s] = COOLDOWN
    ok = why == ""
    # round-robin over sources: rank of each move among the eligible moves of its source host
    cand = np.flatnonzero(ok)
    rank = np.zeros(m, dtype=np.int64)
    if cand.size:
        s = src[cand]
        order = np.lexsort((cand, s))
        first = np.r_[True, s[order][1:] != s[order][:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(cand.size), 0))
        rank[cand[order]] = np.arange(cand.size) - start
    turn = cand[np.lexsort((cand, rank[cand]))]
    used = busy.astype(np.int64).copy()
    pool = int(pool_busy)
    keep = np.zeros(m, dtype=bool)
    for k in turn.tolist():  # slot assignment is sequential by nature: each admission takes slots
        if pool >= limits.per_pool:
            why[k] = POOL_BUSY
        elif used[src[k]] >= limits.per_host or used[dst[k]] >= limits.per_host:
            why[k] = HOST_BUSY
        else:
            keep[k] = True
            used[src[k]] += 1
            used[dst[k]] += 1
            pool += 1
    return keep, [str(w) for w in why]
