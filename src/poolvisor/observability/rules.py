"""The alert rules, as pure functions of numbers: each returns a Finding when its condition
holds, None when it does not (services/alerts.py gathers the numbers and keeps the alerts).

A Finding names its rule and subject (`pool/NAME`, `host/NAME`, `project/NAME`, `task/ID`): one
active alert per (rule, subject), raised when a finding appears, updated while it persists,
resolved when it is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POOL_NEARLY_FULL = "pool_nearly_full"
HOST_DOWN = "host_down"
QUOTA_NEARLY_EXHAUSTED = "quota_nearly_exhausted"
SLA_VIOLATION = "sla_violation"
STUCK_TASK = "stuck_task"
RULES = (POOL_NEARLY_FULL, HOST_DOWN, QUOTA_NEARLY_EXHAUSTED, SLA_VIOLATION, STUCK_TASK)


@dataclass(frozen=True)
class Finding:
    rule: str
    subject: str
    severity: str  # warning | critical
    message: str
    project: str | None = None  # None: a fleet alert (admins only)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.subject}"


@dataclass(frozen=True)
class Thresholds:
    """pool_full / quota: warn at this fraction used (critical at `critical`); sla_over: the
    measured-demand-over-capacity ratio that is critical (any excess warns); task_deadline_s:
    an active task older than this is stuck, and so is one whose lease expired more than
    lease_grace_s ago (no process took it over)."""

    pool_full: float = 0.90
    quota: float = 0.90
    critical: float = 0.98
    sla_over: float = 1.25
    task_deadline_s: float = 3600.0
    lease_grace_s: float = 60.0  # the repair sweep takes an expired task over within seconds

    def __post_init__(self) -> None:
        for name in ("pool_full", "quota", "critical"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {v!r}")
        if not self.sla_over >= 1 or not self.task_deadline_s > 0 or not self.lease_grace_s >= 0:
            raise ValueError("sla_over must be >= 1, task_deadline_s > 0 and lease_grace_s >= 0")


def _fullest(used: Mapping[str, float], limit: Mapping[str, float]) -> tuple[str, float] | None:
    ratios = [(r, used.get(r, 0.0) / cap) for r, cap in sorted(limit.items()) if cap > 0]
    return max(ratios, key=lambda x: x[1]) if ratios else None


def pool_nearly_full(pool: str, allocated: Mapping[str, float], capacity: Mapping[str, float],
                     t: Thresholds) -> Finding | None:
    """A resource of the pool is allocated at `t.pool_full` of its allocatable capacity or more."""
    top = _fullest(allocated, capacity)
    if top is None or top[1] < t.pool_full:
        return None
    res, ratio = top
    return Finding(POOL_NEARLY_FULL, f"pool/{pool}", "critical" if ratio >= t.critical else "warning",
                   f"pool {pool}: {res} {ratio:.0%} allocated (threshold {t.pool_full:.0%})",
                   data={"resource": res, "ratio": round(ratio, 4), "threshold": t.pool_full})


def host_down(host: str, state: str) -> Finding | None:
    """The host is down (no heartbeat, or failed): its workloads were lost."""
    if state != "down":
        return None
    return Finding(HOST_DOWN, f"host/{host}", "critical", f"host {host} is down", data={"state": state})


def quota_nearly_exhausted(project: str, usage: Mapping[str, float], limit: Mapping[str, float],
                           t: Thresholds) -> Finding | None:
    """The project uses `t.quota` of one of its quotas or more (usage and limit per resource or
    count, e.g. {"vcpu": 30, "workloads": 9} of {"vcpu": 32, "workloads": 10})."""
    top = _fullest(usage, limit)
    if top is None or top[1] < t.quota:
        return None
    res, ratio = top
    used = usage.get(res, 0.0)
    return Finding(QUOTA_NEARLY_EXHAUSTED, f"project/{project}",
                   "critical" if ratio >= t.critical else "warning",
                   f"project {project}: {res} quota {ratio:.0%} used ({used:g} of {limit[res]:g})",
                   project=project, data={"resource": res, "ratio": round(ratio, 4), "used": used,
                                          "limit": limit[res]})


def sla_violation(host: str, demand: Mapping[str, float], capacity: Mapping[str, float],
                  t: Thresholds) -> Finding | None:
    """Measured demand exceeds what the host physically has (an overcommitted host saturated:
    its workloads get less than they ask for, CloudSim's SLA violation time per active host)."""
    over = [(r, demand[r] / cap) for r, cap in sorted(capacity.items()) if cap > 0 and r in demand
            and demand[r] > cap]
    if not over:
        return None
    res, ratio = max(over, key=lambda x: x[1])
    return Finding(SLA_VIOLATION, f"host/{host}", "critical" if ratio >= t.sla_over else "warning",
                   f"host {host}: {res} demand {demand[res]:g} over its capacity {capacity[res]:g} "
                   f"({ratio:.0%})", data={"resource": res, "demand": demand[res], "capacity": capacity[res],
                                           "ratio": round(ratio, 4)})


def stuck_task(task_id: int, kind: str, subject: str, project: str | None, state: str, age_s: float,
               lease_expired_s: float | None, t: Thresholds) -> Finding | None:
    """An active (queued or running) task whose owner's lease ran out without a repair taking it
    over within the grace (`lease_expired_s`: seconds since it expired, None while valid), or
    older than the deadline."""
    late = age_s > t.task_deadline_s
    orphan = lease_expired_s is not None and lease_expired_s > t.lease_grace_s
    if not late and not orphan:
        return None
    why = (f"lease expired {lease_expired_s:.0f} s ago" if orphan else
           f"{state} for {age_s:.0f} s (deadline {t.task_deadline_s:g} s)")
    return Finding(STUCK_TASK, f"task/{task_id}", "critical" if orphan and late else "warning",
                   f"task {task_id} ({kind} {subject}) stuck: {why}", project=project,
                   data={"state": state, "age_s": round(age_s, 1), "lease_expired_s": lease_expired_s})
