"""Allocation ledger operations, always inside the caller's transaction.

Every change to a host's allocations goes through here so that `host_resources.allocated`, the
`allocations` rows, `hosts.workloads` and `hosts.generation` move together; and, for GPUs, the
devices: `host_gpus.allocated` and the `gpu_allocations` rows (which GPU, how many milli).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Float, case, delete, insert, literal, select, update
from sqlalchemy.orm import Session

from poolvisor.policies.placement import gpufrag, gpushare
from poolvisor.services import quotas
from poolvisor.store.retry import Stale
from poolvisor.store.rows import (
    AllocationRow,
    GpuAllocationRow,
    HostGpuRow,
    HostResourceRow,
    HostRow,
    WorkloadRow,
)

EPS = 1e-9
# the session holds no ORM copies of these rows worth synchronizing: skip that per-statement work
_NO_SYNC: dict[str, Any] = {"execution_options": {"synchronize_session": False}}


def claim(s: Session, host_id: int, generation: int | None, demand: Mapping[str, float],
          workload_id: int, gpus: Sequence[int] | None = None, *,
          quota_project: int | None = None) -> list[int]:
    """Allocate `demand` on a host for a workload, or raise Stale (the caller's transaction rolls back).

    With `generation`, the host row must still be at that generation (optimistic concurrency);
    in every case the host must be up, below its workload limit, and each resource's new total
    must stay within capacity * overcommit, checked by the UPDATE itself under the write lock.
    A `gpu` demand also takes devices (claim_gpus): `gpus` the ones the placement chose, else the
    ledger's rule. Returns the devices taken.
    `quota_project`: a new workload of that project; its quota is then re-checked here too, under
    the project's quota lock (services/quotas.py), and QuotaExceededError rolls the claim back.
    """
    q = update(HostRow).where(HostRow.id == host_id, HostRow.state == "up",
                              (HostRow.max_workloads == 0) | (HostRow.workloads < HostRow.max_workloads))
    if generation is not None:
        q = q.where(HostRow.generation == generation)
    r = s.execute(q.values(generation=HostRow.generation + 1, workloads=HostRow.workloads + 1), **_NO_SYNC)
    if r.rowcount != 1:  # type: ignore[attr-defined]
        raise Stale()
    amounts = {res: float(a) for res, a in demand.items() if a > 0}
    taken: list[int] = []
    if amounts:
        _claim_resources(s, host_id, amounts, workload_id)
        taken = claim_gpus(s, host_id, workload_id, amounts.get(gpushare.GPU, 0.0), gpus)
    if quota_project is not None:
        quotas.verify(s, quota_project, amounts, 1)
    return taken


def _claim_resources(s: Session, host_id: int, amounts: dict[str, float], workload_id: int) -> None:
    delta = _per_resource(amounts)
    r = s.execute(
        update(HostResourceRow)
        .where(HostResourceRow.host_id == host_id, HostResourceRow.resource.in_(list(amounts)),
               HostResourceRow.allocated + delta
               <= HostResourceRow.capacity * HostResourceRow.overcommit + EPS)
        .values(allocated=HostResourceRow.allocated + delta), **_NO_SYNC,
    )
    if r.rowcount != len(amounts):  # type: ignore[attr-defined]
        raise Stale()  # a resource the host lacks, or not enough of it
    s.execute(insert(AllocationRow), [{"workload_id": workload_id, "host_id": host_id, "resource": res,
                                       "amount": a} for res, a in amounts.items()])


def claim_gpus(s: Session, host_id: int, workload_id: int, gpu: float,
               prefer: Sequence[int] | None = None) -> list[int]:
    """Take the devices of a `gpu` demand on the host: a fraction (< 1) is milli on one GPU, n whole
    GPUs are n fully free ones. `prefer` (the placement's choice) is kept when it still fits, else
    the ledger chooses (gpushare.choose_devices, on the rows as this transaction reads them). Each
    device's UPDATE re-checks `allocated + milli <= 1000` itself, so a device taken concurrently
    fails the claim (Stale) instead of being over-allocated."""
    if gpu <= 0:
        return []
    pod = gpushare.pod_of(0.0, gpu)
    rows = s.execute(select(HostGpuRow.device, HostGpuRow.allocated).where(HostGpuRow.host_id == host_id)
                     .order_by(HostGpuRow.device)).all()
    free = np.zeros(max((d for d, _a in rows), default=-1) + 1, dtype=np.int64)
    for d, a in rows:
        free[d] = gpufrag.MILLI - a
    chosen = None
    if prefer is not None and len(prefer) == pod.count and len(set(prefer)) == pod.count \
            and all(0 <= g < free.size and free[g] >= pod.milli for g in prefer):
        chosen = [int(g) for g in prefer]
    if chosen is None:
        got = gpushare.choose_devices(free, pod)
        if got is None:
            raise Stale()  # the host's devices cannot hold it (now): decide again
        chosen = [int(g) for g in got]
    for d in chosen:
        r = s.execute(update(HostGpuRow)
                      .where(HostGpuRow.host_id == host_id, HostGpuRow.device == d,
                             HostGpuRow.allocated + pod.milli <= gpufrag.MILLI)
                      .values(allocated=HostGpuRow.allocated + pod.milli), **_NO_SYNC)
        if r.rowcount != 1:  # type: ignore[attr-defined]
            raise Stale()
    s.execute(insert(GpuAllocationRow), [{"workload_id": workload_id, "host_id": host_id, "device": d,
                                          "milli": pod.milli} for d in chosen])
    return chosen


def release(s: Session, w: WorkloadRow) -> None:
    """Give back everything the workload holds (on whatever hosts the ledger says) and detach it."""
    rows = s.execute(select(AllocationRow.host_id, AllocationRow.resource, AllocationRow.amount)
                     .where(AllocationRow.workload_id == w.id)).all()
    by_host: dict[int, dict[str, float]] = {}
    for host_id, resource, amount in rows:
        by_host.setdefault(host_id, {})[resource] = amount
    for host_id, amounts in by_host.items():
        s.execute(update(HostResourceRow)
                  .where(HostResourceRow.host_id == host_id, HostResourceRow.resource.in_(list(amounts)))
                  .values(allocated=HostResourceRow.allocated - _per_resource(amounts)), **_NO_SYNC)
    s.execute(delete(AllocationRow).where(AllocationRow.workload_id == w.id), **_NO_SYNC)
    for host_id, device, milli in s.execute(select(GpuAllocationRow.host_id, GpuAllocationRow.device,
                                                   GpuAllocationRow.milli)
                                            .where(GpuAllocationRow.workload_id == w.id)).all():
        s.execute(update(HostGpuRow).where(HostGpuRow.host_id == host_id, HostGpuRow.device == device)
                  .values(allocated=HostGpuRow.allocated - milli), **_NO_SYNC)
    s.execute(delete(GpuAllocationRow).where(GpuAllocationRow.workload_id == w.id), **_NO_SYNC)
    hosts = set(by_host) | ({w.host_id} if w.host_id is not None else set())
    for h in hosts:
        s.execute(update(HostRow).where(HostRow.id == h).values(
            generation=HostRow.generation + 1, workloads=HostRow.workloads - 1), **_NO_SYNC)
    w.host_id = None


def bump(s: Session, host_id: int) -> None:
    s.execute(update(HostRow).where(HostRow.id == host_id).values(generation=HostRow.generation + 1),
              **_NO_SYNC)


def _per_resource(amounts: Mapping[str, float]) -> Any:
    """CASE resource WHEN 'vcpu' THEN 2 ... END: one UPDATE covers every resource of a host."""
    return case(*((HostResourceRow.resource == r, literal(a, Float)) for r, a in amounts.items()), else_=0.0)
