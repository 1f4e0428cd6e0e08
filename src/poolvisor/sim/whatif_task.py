"""What-if runs as tasks: replay a pool's recorded utilization under consolidation policies.

The computation is `poolvisor whatif`'s (whatif.py: the pool as it runs is the baseline, then each
policy from the current placement); here it is a `whatif` task, so it runs on the server's task
executor (not inside a request), reports progress, and its result (metrics and time series per
run) stays in the task row to be shown again later (the dashboard's what-if page). Like
whatif.py it lives with the simulator, outside services/, and uses only the public services:
`register(svc)` installs the task handler (`poolvisor serve` does it through the app). It reads
every project's workloads, so callers check for an admin first (api.auth.admin). Nothing is
written but the task: a run interrupted by a crash is run again when the task is resumed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.models import check_name
from poolvisor.services import Services
from poolvisor.services.records import TASK_SUCCEEDED, TaskRecord
from poolvisor.sim.engine import PolicySpec
from poolvisor.sim.whatif import history_from_store, pool_from_services, simulate_whatif

WHATIF = "whatif"
MAX_STEPS = 2016  # a week of 5-minute steps
MAX_POLICIES = 4
MAX_VMS = 5000
MAX_POINTS = 500  # per stored series (a chart's width); longer runs are averaged into bins


def _bins(a: np.ndarray, n: int, *, total: bool = False) -> list[float]:
    """`a` in at most `n` consecutive bins: each bin's mean (or sum)."""
    a = np.asarray(a, dtype=np.float64)
    if a.size <= n:
        return a.tolist()
    k = math.ceil(a.size / n)
    pad = np.full(k * math.ceil(a.size / k), np.nan)
    pad[:a.size] = a
    m = pad.reshape(-1, k)
    return (np.nansum(m, axis=1) if total else np.nanmean(m, axis=1)).tolist()


def _run_dict(r: Any, start_s: float) -> dict[str, Any]:
    t = np.asarray(r.time_s, dtype=np.float64) + start_s
    k = max(1, math.ceil(t.size / MAX_POINTS))
    return {"label": r.label, "metrics": r.to_dict(series=False),
            "series": {"time_s": t[::k].tolist(), "active_hosts": _bins(r.active_hosts, MAX_POINTS),
                       "power_w": _bins(r.power_w, MAX_POINTS),
                       "migrations": _bins(r.migrations, MAX_POINTS, total=True)}}


def register(svc: Services) -> None:
    """Let `svc`'s task executor run what-if tasks (idempotent)."""
    svc.tasks.handlers[WHATIF] = WhatifRuns(svc).run_task


class WhatifRuns:
    """Submit and run what-if tasks (kind `whatif`) over the public services."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.tasks = svc.tasks

    def submit(self, pool: str | None, policies: list[str], *, steps: int, interval_s: float,
               fresh: bool = False) -> TaskRecord:
        """Queue a run (404 at once for an unknown pool, 422 for a bad policy or bound)."""
        if pool is not None:
            check_name("pool", pool)
            self.svc.catalog.get_pool(pool)
        if not 1 <= len(policies) <= MAX_POLICIES:
            raise InvalidInputError(f"policies: give 1..{MAX_POLICIES}")
        for p in policies:
            PolicySpec.parse(p, None)  # an unknown policy is refused now, not by the task
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
            raise InvalidInputError(f"steps: give a whole number in 2..{MAX_STEPS}")
        if not (isinstance(interval_s, (int, float)) and 1 <= interval_s <= 86400):
            raise InvalidInputError("interval: give 1..86400 seconds")
        params = {"pool": pool, "policies": list(policies), "steps": steps, "interval_s": float(interval_s),
                  "fresh": bool(fresh)}
        subject = f"pool/{pool}" if pool is not None else "all hosts"
        return self.tasks.submit(WHATIF, None, subject, params, lambda _s: None)

    def run_task(self, task_id: int) -> None:
        """The task handler: snapshot, read the history, replay each run, store the result."""
        p = self.tasks.get_task(task_id).params
        pool, keep = p.get("pool"), not p.get("fresh")
        snap = pool_from_services(self.svc, pool)
        if not snap.vms:
            where = f"pool {pool!r}" if pool else "any host"
            raise InvalidInputError(f"no running VM on {where}: nothing to replay")
        if len(snap.vms) > MAX_VMS:
            raise InvalidInputError(f"{len(snap.vms)} VMs: a what-if task replays at most {MAX_VMS}; "
                                    "use the CLI")
        hist, missing = history_from_store(self.svc, snap.vms, float(p["interval_s"]),
                                           steps=int(p["steps"]))
        start = float(hist.start_s or 0.0)
        plan = [("dvfs", "as-is" if keep else "first-fit"), *((q, None) for q in p["policies"])]
        runs = []
        for i, (policy, label) in enumerate(plan):
            r = simulate_whatif(snap, hist, policy, keep_placement=keep)
            if label is not None:
                r.policy = label
            runs.append(_run_dict(r, start))
            self.tasks.task_note(task_id, f"{r.label}: {r.metrics.get('energy_kwh', 0):.4g} kWh, "
                                 f"{r.metrics.get('migrations', 0)} migrations", progress=(i + 1) / len(plan))
        result = {"pool": pool, "vms": len(snap.vms), "hosts": len(snap.hosts),
                  "steps": int(hist.util.shape[1]), "interval_s": hist.interval_s, "start_s": hist.start_s,
                  "without_history": len(missing), "runs": runs}
        self.tasks.end_task(task_id, TASK_SUCCEEDED, result=result)
