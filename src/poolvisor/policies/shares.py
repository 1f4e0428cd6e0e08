"""Reservations, limits and shares: what placement sets aside, and who gets what under contention.

A workload declares per resource a reservation (its guaranteed minimum), a limit (the most it may
use) and shares (its relative weight when a host is short). Pure functions over columns, used by
every caller that needs the answer (one policy core): the create path (services/shares.py, what
the ledger claims), the sim driver (drivers/sim.py, what a guest is granted) and the PlanetLab
simulator's shares mode (sim/engine.py, the CPU a VM gets on an overloaded host).

**Static allocation policies** (:func:`set_aside`, chosen per pool):

- ``min``: the reservation (dense packing, relies on shares at run time);
- ``max``: the limit (no contention possible on what was declared; the default);
- ``balanced``: the reservation plus a share-proportional part of the headroom,
  ``r + (l - r) * min(1, s / (2 * NORMAL_SHARES))``: a workload with normal shares (1000) gets
  half its headroom set aside, one with 2000 shares or more its whole limit, one with 500 a
  quarter. Shares say how much a workload should win under contention, so the same number says
  how much of its burst room is worth guaranteeing at placement.

**Contention** (:func:`grant`): on a host whose measured demand exceeds its capacity, each workload
gets ``clip(level * shares, min(demand, reservation), min(demand, limit))`` with one water level
per host and resource chosen so the grants fill the capacity exactly: the reservation first,
then the rest split in proportion to shares, a workload capped at its limit or its demand giving
its unused part to the others (max-min fair water-filling). When even the reservations do not
fit (an overcommitted host), the reservations are scaled down in proportion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from poolvisor.domain.errors import InvalidInputError

ALLOCATION_POLICIES: tuple[str, ...] = ("min", "max", "balanced")
DEFAULT_ALLOCATION_POLICY = "max"
NORMAL_SHARES = 1000.0
MAX_SHARES = 1_000_000.0
_BISECT = 60  # halvings of the water level's bracket before the exact final step


def check_policy(name: str) -> str:
    if name not in ALLOCATION_POLICIES:
        allowed = ", ".join(ALLOCATION_POLICIES)
        raise InvalidInputError(f"unknown allocation policy {name!r}; allowed: {allowed}")
    return name


def set_aside(policy: str, reservation: np.ndarray, limit: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """What placement claims for each workload and resource under the static policy (same shape)."""
    check_policy(policy)
    r = np.asarray(reservation, dtype=np.float64)
    lim = np.asarray(limit, dtype=np.float64)
    if policy == "min":
        return r.copy()
    if policy == "max":
        return lim.copy()
    frac = np.minimum(1.0, np.asarray(shares, dtype=np.float64) / (2.0 * NORMAL_SHARES))
    return r + (lim - r) * frac


def amount(policy: str, spec: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """What the ledger claims for one declaration (resource -> reservation, limit, shares) under
    `policy`, per declared resource: :func:`set_aside` of one workload."""
    names = list(spec)
    res, lim, sh = spec_columns([({}, spec)], names)
    got = set_aside(policy, res, lim, sh)[0]
    return {n: float(a) for n, a in zip(names, got, strict=True)}


_FALLBACK_RANK = {"balanced": 0, "min": 1}  # balanced guarantees more of the limit than min


def fallback_order(policies: Mapping[int, str]) -> list[int]:
    """The pools (id -> policy) a declaration naming no pool tries, in order, when what the default
    policy sets aside (max: its limit, the most of any policy) fits no host: every pool whose
    policy may set aside less, balanced before min (it keeps more of the limit guaranteed), then
    by pool id (stable, so replicas and retries agree)."""
    for pol in policies.values():
        check_policy(pol)
    return sorted((p for p, pol in policies.items() if pol != DEFAULT_ALLOCATION_POLICY),
                  key=lambda p: (_FALLBACK_RANK[policies[p]], p))


def grant(demand: np.ndarray, reservation: np.ndarray, limit: np.ndarray, shares: np.ndarray,
          capacity: np.ndarray, host: np.ndarray | None = None) -> np.ndarray:
    """What each workload gets, (n, R): demand, reservation, limit and shares per workload and
    resource; capacity (H, R) per host (or (R,) with host None: one host); host (n,) the host of
    each workload. A host whose demand fits gives every workload min(demand, limit)."""
    d = np.atleast_2d(np.asarray(demand, dtype=np.float64))
    n, R = d.shape
    hi = np.minimum(d, np.asarray(limit, dtype=np.float64).reshape(n, R))
    lo = np.minimum(np.asarray(reservation, dtype=np.float64).reshape(n, R), hi)
    s = np.maximum(np.asarray(shares, dtype=np.float64).reshape(n, R), 1e-12)
    h = np.zeros(n, dtype=np.int64) if host is None else np.asarray(host, dtype=np.int64)
    cap = np.asarray(capacity, dtype=np.float64).reshape(-1, R)
    H = cap.shape[0]
    if n == 0:
        return np.zeros((0, R))

    def per_host(x: np.ndarray) -> np.ndarray:  # (n, R) -> (H, R) sums
        return np.stack([np.bincount(h, x[:, r], H) for r in range(R)], axis=1)

    want, floor = per_host(hi), per_host(lo)
    fits = want <= cap + 1e-9  # (H, R)
    short = floor >= cap  # even the reservations do not fit: scale them down
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = np.where(floor > 0, cap / floor, 0.0)
    out = np.where(fits[h], hi, np.where(short[h], lo * cut[h], 0.0))
    todo = ~fits & ~short
    if not todo.any():
        return out
    # water level per (host, resource): sum_i clip(level * s_i, lo_i, hi_i) = cap
    a, b = np.zeros((H, R)), _max_per_host(hi / s, h, H)  # at b every workload is at its cap
    for _ in range(_BISECT):
        mid = (a + b) / 2
        over = per_host(np.clip(mid[h] * s, lo, hi)) > cap
        a, b = np.where(over, a, mid), np.where(over, mid, b)
    # exact level from the zones at the bracket: those between their bounds share what is left
    level = b[h]
    free = (level * s > lo) & (level * s < hi)
    fixed = np.where(free, 0.0, np.clip(level * s, lo, hi))
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = (cap - per_host(fixed)) / per_host(np.where(free, s, 0.0))
    lvl = np.where(np.isfinite(exact) & (exact > 0), exact, b)
    water = np.clip(lvl[h] * s, lo, hi)
    return np.where(todo[h], water, out)


def spec_columns(items: Sequence[tuple[Mapping[str, float], Mapping[str, Mapping[str, float]] | None]],
                 names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reservation, limit, shares), each (n, len(names)), of workloads given as (demand, declared
    spec or None). Undeclared: reservation = limit = demand, shares normal; a resource a workload
    does not demand: 0, 0, normal."""
    n, R = len(items), len(names)
    res, lim, sh = np.zeros((n, R)), np.zeros((n, R)), np.full((n, R), NORMAL_SHARES)
    for i, (demand, spec) in enumerate(items):
        for j, r in enumerate(names):
            d = spec.get(r) if spec else None
            if d is not None:
                res[i, j], lim[i, j] = float(d["reservation"]), float(d["limit"])
                sh[i, j] = float(d["shares"])
            elif r in demand:
                res[i, j] = lim[i, j] = float(demand[r])
    return res, lim, sh


def _max_per_host(x: np.ndarray, h: np.ndarray, H: int) -> np.ndarray:
    """(H, R): the largest x per host (0 for a host with none): the water level that fills all."""
    out = np.zeros((H, x.shape[1]))
    np.maximum.at(out, h, x)
    return out
