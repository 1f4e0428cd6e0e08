"""Allocation ledger operations, always inside the caller's transaction.

Every change to a host's allocations goes through here so that `host_resources.allocated`, the
`allocations` rows, `hosts.workloads` and `hosts.generation` move together.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from poolvisor.services.base import Stale
from poolvisor.store.rows import AllocationRow, HostResourceRow, HostRow, WorkloadRow

EPS = 1e-9


def claim(s: Session, host_id: int, generation: int | None, demand: Mapping[str, float],
          workload_id: int) -> None:
    """Allocate `demand` on a host for a workload, or raise Stale (the caller's transaction rolls back).

    With `generation`, the host row must still be at that generation (optimistic concurrency);
    in every case the host must be up, below its workload limit, and each resource's new total
    must stay within capacity * overcommit, checked by the UPDATE itself under the write lock.
    """
    q = update(HostRow).where(HostRow.id == host_id, HostRow.state == "up",
                              (HostRow.max_workloads == 0) | (HostRow.workloads < HostRow.max_workloads))
    if generation is not None:
        q = q.where(HostRow.generation == generation)
    r = s.execute(q.values(generation=HostRow.generation + 1, workloads=HostRow.workloads + 1))
    if r.rowcount != 1:  # type: ignore[attr-defined]
        raise Stale()
    for resource, amount in demand.items():
        if amount <= 0:
            continue
        r = s.execute(
            update(HostResourceRow)
            .where(HostResourceRow.host_id == host_id, HostResourceRow.resource == resource,
                   HostResourceRow.allocated + amount
                   <= HostResourceRow.capacity * HostResourceRow.overcommit + EPS)
            .values(allocated=HostResourceRow.allocated + amount)
        )
        if r.rowcount != 1:  # type: ignore[attr-defined]
            raise Stale()
        s.add(AllocationRow(workload_id=workload_id, host_id=host_id, resource=resource, amount=amount))


def release(s: Session, w: WorkloadRow) -> None:
    """Give back everything the workload holds (on whatever hosts the ledger says) and detach it."""
    rows = s.scalars(select(AllocationRow).where(AllocationRow.workload_id == w.id)).all()
    hosts = {a.host_id for a in rows} | ({w.host_id} if w.host_id is not None else set())
    for a in rows:
        s.execute(
            update(HostResourceRow)
            .where(HostResourceRow.host_id == a.host_id, HostResourceRow.resource == a.resource)
            .values(allocated=HostResourceRow.allocated - a.amount)
        )
    s.execute(delete(AllocationRow).where(AllocationRow.workload_id == w.id))
    for h in hosts:
        s.execute(update(HostRow).where(HostRow.id == h).values(
            generation=HostRow.generation + 1, workloads=HostRow.workloads - 1))
    w.host_id = None


def bump(s: Session, host_id: int) -> None:
    s.execute(update(HostRow).where(HostRow.id == host_id).values(generation=HostRow.generation + 1))
