"""Per-project quota checks: pure functions over plain mappings, no I/O.

A quota maps a key to a limit: a resource name (vcpu, memory_mib, disk_gib, gpu, any custom
resource) limits the sum of the project's allocations of it; `workloads` limits how many of its
workloads hold capacity. A key without a limit is unlimited. The store computes the usage under
the project's quota lock (services/quotas.py); this module only says whether it fits, and why not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WORKLOADS = "workloads"  # the count quota's key (not a resource: never a host capacity)
EPS = 1e-9


@dataclass(frozen=True)
class Excess:
    """The first limit a request would break: the project's use before it, the request, the limit."""

    resource: str
    used: float
    requested: float
    limit: float

    def describe(self, project: str) -> str:
        return (f"quota exceeded in project {project!r}: {self.resource} used {self.used:g} + requested "
                f"{self.requested:g} > limit {self.limit:g}")

    def as_detail(self, project: str) -> dict[str, object]:
        return {"project": project, "resource": self.resource, "used": self.used,
                "requested": self.requested, "limit": self.limit}


def check(limits: Mapping[str, float], used_after: Mapping[str, float],
          requested: Mapping[str, float]) -> Excess | None:
    """The first (by key) limited quantity whose use including the request, `used_after`, is over
    its limit, or None when everything fits. Keys the request does not ask for never fail: a quota
    lowered below the current use blocks new requests for that quantity only, and takes nothing away."""
    for key in sorted(limits):
        want = float(requested.get(key, 0.0))
        if want <= 0:
            continue
        total = float(used_after.get(key, 0.0))
        if total > limits[key] + EPS:
            return Excess(key, max(0.0, total - want), want, float(limits[key]))
    return None


def remaining(limits: Mapping[str, float], used: Mapping[str, float]) -> dict[str, float]:
    """What is left under each limit (never negative)."""
    return {k: max(0.0, float(v) - float(used.get(k, 0.0))) for k, v in limits.items()}
