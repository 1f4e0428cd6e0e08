"""HA admission control: would one more workload leave room to restart the pool's workloads when
hosts fail? A pure, vectorized function over the placement state (no I/O), like vSphere HA's
"cluster resource percentage" policy:

* ``tolerate K host failures``: per resource, what is allocated after the creation must fit in
  the pool's capacity minus its K largest up hosts' capacity (the worst K hosts that can fail);
* ``reserve P % per resource``: per resource, what is allocated after the creation must stay
  within (100 - P) % of the pool's capacity.

Aggregate per resource, not a bin-packing proof: restart can still be refused by fragmentation or
by anti-affinity, which the HA service then reports per workload (it waits with its reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import InvalidInputError

MAX_TOLERATE = 1000


@dataclass(frozen=True)
class AdmissionPolicy:
    """`tolerate`: host failures the pool must absorb (0: none); `reserve`: percent of the pool's
    capacity kept free per resource. Both may hold at once; empty: no admission control."""

    tolerate: int = 0
    reserve: Mapping[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.tolerate > 0 or any(v > 0 for v in self.reserve.values())

    def to_dict(self) -> dict[str, object]:
        return {"tolerate_failures": self.tolerate, "reserve_percent": dict(self.reserve)}


def check_policy(tolerate: object, reserve: object) -> AdmissionPolicy:
    """Validate settings from the API or the CLI (422 otherwise)."""
    if isinstance(tolerate, bool) or not isinstance(tolerate, int) or not 0 <= tolerate <= MAX_TOLERATE:
        raise InvalidInputError(f"tolerate_failures must be an integer in 0..{MAX_TOLERATE}")
    if not isinstance(reserve, Mapping):
        raise InvalidInputError("reserve_percent must be a mapping of resource -> percent")
    out: dict[str, float] = {}
    for r, v in reserve.items():
        if not isinstance(r, str) or not r:
            raise InvalidInputError("reserve_percent names resources")
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 100:
            raise InvalidInputError(f"reserve_percent[{r}] must be a number in [0, 100)")
        out[r] = float(v)
    return AdmissionPolicy(tolerate, out)


@dataclass(frozen=True)
class Refusal:
    """Why a creation breaks the policy: the first resource found short, with its figures."""

    resource: str
    rule: str
    demand: float
    limit: float  # what may be allocated under the policy
    allocated: float  # before the creation
    headroom: float  # limit - allocated (what creations may still take; may be < 0)

    def message(self) -> str:
        return (f"admission control ({self.rule}): {self.resource} {self.demand:g} requested, but only "
                f"{max(self.headroom, 0.0):g} of {self.limit:g} may still be allocated "
                f"({self.allocated:g} allocated)")

    def to_dict(self) -> dict[str, object]:
        return {"resource": self.resource, "rule": self.rule, "demand": self.demand, "limit": self.limit,
                "allocated": self.allocated, "headroom": self.headroom}


def limits(capacity: np.ndarray, up: np.ndarray, policy: AdmissionPolicy,
           resources: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Per resource (rows of `capacity`, R x H over the hosts in scope), what may be allocated
    under the policy and which rule sets it. Only `up` hosts count (down, fenced and maintenance
    hosts hold no restarts)."""
    cap = np.where(up[None, :], capacity, 0.0)
    total = cap.sum(axis=1)
    lim = total.copy()
    rule = ["none"] * len(resources)
    if policy.tolerate > 0:
        k = min(policy.tolerate, cap.shape[1])
        worst = -np.sort(-cap, axis=1)[:, :k].sum(axis=1) if k else np.zeros_like(total)
        lim = total - worst
        rule = [f"tolerate {policy.tolerate} host failure(s)"] * len(resources)
    pct = np.array([policy.reserve.get(r, 0.0) for r in resources], dtype=float)
    by_reserve = total * (1.0 - pct / 100.0)
    tighter = (pct > 0) & (by_reserve < lim)
    for i in np.flatnonzero(tighter).tolist():
        rule[i] = f"reserve {pct[i]:g} % of {resources[i]}"
    return np.where(tighter, by_reserve, lim), rule


def admit(capacity: np.ndarray, allocated: np.ndarray, up: np.ndarray, demand: np.ndarray,
          policy: AdmissionPolicy, resources: Sequence[str]) -> Refusal | None:
    """None when adding `demand` (R) to the hosts in scope (R x H `capacity` and `allocated`,
    H `up`) keeps the policy; else the refusal of the first resource that breaks it. Resources
    the creation does not ask for never refuse it (a pool already short stays usable for
    workloads that do not need what is short)."""
    if not policy.active:
        return None
    lim, rule = limits(capacity, up, policy, resources)
    alloc = np.where(up[None, :], allocated, 0.0).sum(axis=1)
    bad = np.flatnonzero((demand > 0) & (alloc + demand > lim + 1e-9))
    if not bad.size:
        return None
    i = int(bad[0])
    return Refusal(resources[i], rule[i], float(demand[i]), float(lim[i]), float(alloc[i]),
                   float(lim[i] - alloc[i]))


def headroom(capacity: np.ndarray, allocated: np.ndarray, up: np.ndarray, policy: AdmissionPolicy,
             resources: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per resource: limit under the policy, allocated, headroom left (for `GET /v1/ha`)."""
    lim, _rule = limits(capacity, up, policy, resources)
    alloc = np.where(up[None, :], allocated, 0.0).sum(axis=1)
    return {r: {"limit": float(lim[i]), "allocated": float(alloc[i]), "headroom": float(lim[i] - alloc[i])}
            for i, r in enumerate(resources)}
