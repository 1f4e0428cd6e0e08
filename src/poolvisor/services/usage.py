"""What hosts and pools actually use (measured) and what capacity is stranded, for the read models.

Measured use: the store records CPU samples per workload (utilization.py), each the fraction of
the workload's vCPU allocation in use. A host's measured vCPU use is the sum, over the workloads
running on it, of their latest sample times their vCPU allocation. It is known when at least one
running workload has a sample (a lower bound when not all have: `measured` < `running`) or when
none runs (zero); otherwise unknown (None). Only CPU is sampled, so only `vcpu` is reported.

Stranded capacity: scarce resources (the placement policy's `scarce`, e.g. GPUs) free on hosts
that can no longer take even the smallest request needing them (placement/scarce.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from poolvisor.policies.placement.scarce import smallest_requests, stranded
from poolvisor.services.placement_cache import PlacementView
from poolvisor.services.records import MIGRATING, RUNNING
from poolvisor.store.rows import AllocationRow, FlavorRow, UtilizationSampleRow, WorkloadRow

MEASURED_STATES = (RUNNING, MIGRATING)  # workloads that use CPU now; stopped ones use none


@dataclass(frozen=True)
class Use:
    """Measured use of one host or pool; `used` None when unknown."""

    used: dict[str, float] | None
    at: datetime | None  # the newest sample it is based on
    measured: int  # running workloads with a sample
    running: int

    @staticmethod
    def total(parts: list[Use]) -> Use:
        measured, running = sum(p.measured for p in parts), sum(p.running for p in parts)
        times = [p.at for p in parts if p.at is not None]
        known = measured > 0 or running == 0
        vcpu = sum((p.used or {}).get("vcpu", 0.0) for p in parts)
        return Use({"vcpu": vcpu} if known else None, max(times) if times else None, measured, running)


NO_WORKLOADS = Use({"vcpu": 0.0}, None, 0, 0)


def measured_use(s: Session, host_ids: list[int]) -> dict[int, Use]:
    """Use per host id (hosts without running workloads: zero)."""
    if not host_ids:
        return {}
    W, S, A = WorkloadRow, UtilizationSampleRow, AllocationRow
    run = (select(W.id.label("wid"), W.host_id.label("hid"))
           .where(W.host_id.in_(host_ids), W.state.in_(MEASURED_STATES)).subquery())
    running: dict[int, int] = {int(h): int(n) for h, n in
                               s.execute(select(run.c.hid, func.count()).group_by(run.c.hid))}
    last = (select(S.workload_id.label("wid"), func.max(S.time).label("t"))
            .join(run, run.c.wid == S.workload_id).group_by(S.workload_id).subquery())
    latest = (select(last.c.wid, func.avg(S.cpu).label("cpu"), last.c.t)  # several at that instant: mean
              .join(S, (S.workload_id == last.c.wid) & (S.time == last.c.t))
              .group_by(last.c.wid, last.c.t).subquery())
    q = (select(run.c.hid, func.sum(latest.c.cpu * func.coalesce(A.amount, 0.0)), func.count(),
                func.max(latest.c.t))
         .join(latest, latest.c.wid == run.c.wid)
         .outerjoin(A, (A.workload_id == run.c.wid) & (A.host_id == run.c.hid) & (A.resource == "vcpu"))
         .group_by(run.c.hid))
    out = {h: Use(None, None, 0, int(n)) for h, n in running.items()}
    for hid, vcpu, n, t in s.execute(q):
        out[hid] = Use({"vcpu": float(vcpu or 0.0)}, datetime.fromtimestamp(float(t), UTC), int(n),
                       int(running[hid]))
    return {h: out.get(h, NO_WORKLOADS) for h in host_ids}


def stranded_by_pool(s: Session, snap: PlacementView, pool_ids: list[int], scarce: tuple[str, ...]
                     ) -> dict[int, tuple[dict[str, float], list[str]]]:
    """Per pool id: stranded amount per scarce resource and the hosts holding it (names)."""
    st = snap.state
    out: dict[int, tuple[dict[str, float], list[str]]] = defaultdict(lambda: ({}, []))
    probes = smallest_requests(st.resources, scarce, s.scalars(select(FlavorRow.demand)).all())
    if not probes or not pool_ids:
        return out
    pool_of = snap.pool_of[: st.n]
    pids = np.unique(np.asarray(pool_ids, dtype=np.int64))
    hosts = np.flatnonzero(np.isin(pool_of, pids))
    slot = np.searchsorted(pids, pool_of[hosts])
    per = stranded(st, probes, hosts)
    held = np.zeros(hosts.size, dtype=bool)
    for r, amount in per.items():
        held |= amount > 0
        sums = np.bincount(slot, weights=amount, minlength=pids.size)
        for pid, v in zip(pids.tolist(), sums.tolist(), strict=True):
            out[pid][0][r] = float(v)
    for h in hosts[held].tolist():
        out[int(pool_of[h])][1].append(st.names[h])
    return out
