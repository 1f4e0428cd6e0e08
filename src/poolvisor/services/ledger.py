"""Allocation ledger operations, always inside the caller's transaction.

Every change to a host's allocations goes through here so that `host_resources.allocated`, the
`allocations` rows, `hosts.workloads` and `hosts.generation` move together.

The statements are built once (per set of resource names) and run on the session's connection
(Core, bound parameters): building a statement and its cache key cost more than running it, and
claim and release run for every create and delete. Pending ORM changes are flushed first, so
the statements see everything the transaction did before.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Float, Table, Update, bindparam, case, delete, insert, select, update
from sqlalchemy.orm import Session

from poolvisor.store.retry import Stale
from poolvisor.store.rows import AllocationRow, HostResourceRow, HostRow, WorkloadRow

EPS = 1e-9
_HOSTS, _RES, _ALLOC = (cast(Table, r.__table__) for r in (HostRow, HostResourceRow, AllocationRow))
_H, _HR, _AL = _HOSTS.c, _RES.c, _ALLOC.c

_CLAIM_HOST = (update(_HOSTS)
               .where(_H.id == bindparam("h"), _H.state == "up",
                      (_H.max_workloads == 0) | (_H.workloads < _H.max_workloads))
               .values(generation=_H.generation + 1, workloads=_H.workloads + 1))
_CLAIM_HOST_AT = _CLAIM_HOST.where(_H.generation == bindparam("g"))
_INSERT_ALLOCATIONS = insert(_ALLOC)
_HELD = select(_AL.host_id, _AL.resource, _AL.amount).where(_AL.workload_id == bindparam("w"))
_DELETE_ALLOCATIONS = delete(_ALLOC).where(_AL.workload_id == bindparam("w"))
_RELEASE_HOST = (update(_HOSTS).where(_H.id == bindparam("h"))
                 .values(generation=_H.generation + 1, workloads=_H.workloads - 1).returning(_H.generation))
RELEASED = "poolvisor.released"  # Session.info key: [(host id, generation after, amounts, group id)]
_BUMP = update(_HOSTS).where(_H.id == bindparam("h")).values(generation=_H.generation + 1)


def claim(s: Session, host_id: int, generation: int | None, demand: Mapping[str, float],
          workload_id: int) -> None:
    """Allocate `demand` on a host for a workload, or raise Stale (the caller's transaction rolls back).

    With `generation`, the host row must still be at that generation (optimistic concurrency);
    in every case the host must be up, below its workload limit, and each resource's new total
    must stay within capacity * overcommit, checked by the UPDATE itself under the write lock.
    """
    s.flush()
    conn = s.connection()
    if generation is None:
        r = conn.execute(_CLAIM_HOST, {"h": host_id})
    else:
        r = conn.execute(_CLAIM_HOST_AT, {"h": host_id, "g": generation})
    if r.rowcount != 1:
        raise Stale()
    amounts = {res: float(a) for res, a in demand.items() if a > 0}
    if not amounts:
        return
    names = tuple(sorted(amounts))
    r = conn.execute(_add_within_capacity(names), _params(host_id, names, amounts))
    if r.rowcount != len(amounts):
        raise Stale()  # a resource the host lacks, or not enough of it
    conn.execute(_INSERT_ALLOCATIONS, [{"workload_id": workload_id, "host_id": host_id, "resource": res,
                                        "amount": a} for res, a in amounts.items()])


def release(s: Session, w: WorkloadRow) -> None:
    """Give back everything the workload holds (on whatever hosts the ledger says) and detach it.
    Each host's change is listed in `s.info[RELEASED]` (see PlacementCache.written)."""
    s.flush()
    conn = s.connection()
    by_host: dict[int, dict[str, float]] = {}
    for host_id, resource, amount in conn.execute(_HELD, {"w": w.id}):
        by_host.setdefault(host_id, {})[resource] = amount
    hosts = set(by_host) | ({w.host_id} if w.host_id is not None else set())
    done = s.info.setdefault(RELEASED, [])
    # Lock order: the host row first, then its resources, as claim() does; the other order made
    # a concurrent claim and release on one host deadlock on PostgreSQL (each waiting for the
    # other's row until deadlock_timeout, 1 s, aborted one of them).
    for h in sorted(hosts):
        gen = conn.execute(_RELEASE_HOST, {"h": h}).scalar()
        if gen is not None:  # what the caller may write through to its placement view after commit
            done.append((h, int(gen), by_host.get(h, {}), w.group_id))
    for host_id in sorted(by_host):
        names = tuple(sorted(by_host[host_id]))
        conn.execute(_subtract(names), _params(host_id, names, by_host[host_id]))
    conn.execute(_DELETE_ALLOCATIONS, {"w": w.id})
    w.host_id = None


def bump(s: Session, host_id: int) -> None:
    s.flush()
    s.connection().execute(_BUMP, {"h": host_id})


def _delta(resources: tuple[str, ...]) -> Any:
    """CASE resource WHEN 'vcpu' THEN :a0 ... END: one UPDATE covers every resource of a host."""
    return case(*((_HR.resource == r, bindparam(f"a{i}", type_=Float)) for i, r in enumerate(resources)),
                else_=0.0)


@lru_cache(maxsize=256)
def _add_within_capacity(resources: tuple[str, ...]) -> Update:
    delta = _delta(resources)
    return (update(_RES)
            .where(_HR.host_id == bindparam("h"), _HR.resource.in_(resources),
                   _HR.allocated + delta <= _HR.capacity * _HR.overcommit + EPS)
            .values(allocated=_HR.allocated + delta))


@lru_cache(maxsize=256)
def _subtract(resources: tuple[str, ...]) -> Update:
    return (update(_RES).where(_HR.host_id == bindparam("h"), _HR.resource.in_(resources))
            .values(allocated=_HR.allocated - _delta(resources)))


def _params(host_id: int, names: tuple[str, ...], amounts: Mapping[str, float]) -> dict[str, Any]:
    return {"h": host_id} | {f"a{i}": float(amounts[n]) for i, n in enumerate(names)}
