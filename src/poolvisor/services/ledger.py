"""Allocation ledger operations, always inside the caller's transaction.

Every change to a host's allocations goes through here so that `host_resources.allocated`, the
`allocations` rows, `hosts.workloads` and `hosts.generation` move together; and, for GPUs, the
devices: `host_gpus.allocated` and the `gpu_allocations` rows (which GPU, how many milli).

The statements are built and compiled once (per set of resource names) and run on the
session's DBAPI cursor (store/prepared.py): SQLAlchemy's per-execution work cost several times
the statement itself, and claim and release run for every create and delete. Pending ORM changes
are flushed first, so the statements see everything the transaction did before.

On PostgreSQL a claim is one statement (`_CLAIM_PG`: the host's guarded UPDATE, then its
resources' guarded UPDATE, then the allocation rows, as data-modifying CTEs) instead of three
round trips and an executemany: the same guards in the same lock order (the resources' UPDATE
reads the host UPDATE's result, so the host row is locked first), and a claim that finds the host
or a resource short raises Stale as before, its caller's transaction or savepoint rolling back
whatever the statement wrote. A release of a workload whose allocations are all on its host is
one statement there too (`_RELEASE_PG`), the host row again locked before its resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, cast

import numpy as np
from sqlalchemy import Float, Integer, String, Table, bindparam, case, delete, insert, select, text, update
from sqlalchemy.orm import Session

from poolvisor.policies.placement import gpufrag, gpushare
from poolvisor.services import quotas
from poolvisor.store.prepared import Prepared
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
_HOSTS, _RES, _ALLOC = (cast(Table, r.__table__) for r in (HostRow, HostResourceRow, AllocationRow))
_GPUS, _GPU_ALLOC = (cast(Table, r.__table__) for r in (HostGpuRow, GpuAllocationRow))
_H, _HR, _AL = _HOSTS.c, _RES.c, _ALLOC.c
_CLAIM_HOST_Q = (update(_HOSTS)
                 .where(_H.id == bindparam("h"), _H.state == "up",
                        (_H.max_workloads == 0) | (_H.workloads < _H.max_workloads))
                 .values(generation=_H.generation + 1, workloads=_H.workloads + 1))
_CLAIM_HOST = Prepared(_CLAIM_HOST_Q)
_CLAIM_HOST_AT = Prepared(_CLAIM_HOST_Q.where(_H.generation == bindparam("g")))
# a workload going back to the host it was on (a failed or cancelled migration): a host in
# maintenance or being drained takes back its own workload too (else it would be lost)
_CLAIM_BACK = Prepared(update(_HOSTS)
                       .where(_H.id == bindparam("h"), _H.state.in_(("up", "maintenance", "draining")),
                              (_H.max_workloads == 0) | (_H.workloads < _H.max_workloads))
                       .values(generation=_H.generation + 1, workloads=_H.workloads + 1))
_INSERT_ALLOCATIONS = Prepared(insert(_ALLOC), keys=("workload_id", "host_id", "resource", "amount"))
# a release deletes the workload's allocation rows and learns from them what to give back, in one
# statement (DELETE ... RETURNING: SQLite >= 3.35, PostgreSQL)
_TAKE_HELD = Prepared(delete(_ALLOC).where(_AL.workload_id == bindparam("w"))
                      .returning(_AL.host_id, _AL.resource, _AL.amount))
_RELEASE_HOST = Prepared(update(_HOSTS).where(_H.id == bindparam("h"))
                         .values(generation=_H.generation + 1, workloads=_H.workloads - 1)
                         .returning(_H.generation))
RELEASED = "poolvisor.released"  # Session.info key: [(host id, generation after, amounts, group id)]
_TAKE_GPUS = Prepared(delete(_GPU_ALLOC).where(_GPU_ALLOC.c.workload_id == bindparam("w"))
                      .returning(_GPU_ALLOC.c.host_id, _GPU_ALLOC.c.device, _GPU_ALLOC.c.milli))
_GPU_GIVE_BACK = Prepared(update(_GPUS).where(_GPUS.c.host_id == bindparam("h"),
                                              _GPUS.c.device == bindparam("d"))
                          .values(allocated=_GPUS.c.allocated - bindparam("m")))
_BUMP_Q = update(_HOSTS).where(_H.id == bindparam("h")).values(generation=_H.generation + 1)
_BUMP = Prepared(_BUMP_Q)
_GUARD = Prepared(_BUMP_Q.where(_H.generation == bindparam("g")))


def _claim_pg(host_where: str) -> Prepared:
    """The PostgreSQL claim in one statement: (hosts claimed 0/1, resources claimed)."""
    pairs = "unnest(CAST(:res AS VARCHAR[]), CAST(:amt AS FLOAT8[])) AS x(resource, amount)"
    return Prepared(text(f"""
        WITH h AS (UPDATE hosts SET generation = generation + 1, workloads = workloads + 1
                   WHERE id = :h AND {host_where}
                     AND (max_workloads = 0 OR workloads < max_workloads)
                   RETURNING id),
        r AS (UPDATE host_resources AS hr SET allocated = hr.allocated + x.amount FROM {pairs}
              WHERE hr.host_id = :h AND hr.resource = x.resource
                AND hr.allocated + x.amount <= hr.capacity * hr.overcommit + {EPS!r}
                AND EXISTS (SELECT 1 FROM h)
              RETURNING hr.resource),
        a AS (INSERT INTO allocations (workload_id, host_id, resource, amount)
              SELECT :w, :h, x.resource, x.amount FROM {pairs}
              WHERE (SELECT count(*) FROM r) = :n)
        SELECT (SELECT count(*) FROM h) AS hosts, (SELECT count(*) FROM r) AS resources
        """).columns(hosts=Integer, resources=Integer))


_CLAIM_PG = _claim_pg("state = 'up'")
_CLAIM_PG_AT = _claim_pg("state = 'up' AND generation = :g")
_CLAIM_PG_BACK = _claim_pg("state IN ('up', 'maintenance', 'draining')")


# the workload's allocation rows deleted; when they are all on host :h (or there are none), that
# host's count and generation, then its resources (reading the host's result: locked after it);
# the rows deleted, each with the host's new generation (NULL: not released here), or one row of
# NULLs and that generation when there were none (`r`, never read, runs all the same: PostgreSQL
# runs every data-modifying CTE to completion)
_RELEASE_PG = Prepared(text("""
    WITH d AS (DELETE FROM allocations WHERE workload_id = :w RETURNING host_id, resource, amount),
    h AS (UPDATE hosts SET generation = generation + 1, workloads = workloads - 1
          WHERE id = :h AND NOT EXISTS (SELECT 1 FROM d WHERE d.host_id <> :h)
          RETURNING generation),
    r AS (UPDATE host_resources AS hr SET allocated = hr.allocated - d.amount FROM d
          WHERE hr.host_id = d.host_id AND hr.resource = d.resource AND EXISTS (SELECT 1 FROM h)
          RETURNING hr.resource)
    SELECT d.host_id, d.resource, d.amount, (SELECT generation FROM h) AS gen FROM d
    UNION ALL
    SELECT NULL, NULL, NULL, (SELECT generation FROM h) WHERE NOT EXISTS (SELECT 1 FROM d)
    """).columns(host_id=Integer, resource=String, amount=Float, gen=Integer))


def claim(s: Session, host_id: int, generation: int | None, demand: Mapping[str, float],
          workload_id: int, gpus: Sequence[int] | None = None, *,
          quota_project: int | None = None, back: bool = False) -> list[int]:
    """Allocate `demand` on a host for a workload, or raise Stale (the caller's transaction rolls back).

    With `generation`, the host row must still be at that generation (optimistic concurrency);
    in every case the host must be up, below its workload limit, and each resource's new total
    must stay within capacity * overcommit, checked by the UPDATE itself under the write lock.
    A `gpu` demand also takes devices (claim_gpus): `gpus` the ones the placement chose, else the
    ledger's rule. Returns the devices taken.
    `quota_project`: a new workload of that project; its quota is then re-checked here too, under
    the project's quota lock (services/quotas.py), and QuotaExceededError rolls the claim back.
    `back`: the workload returns to its migration's source, which may be in maintenance or draining.
    """
    s.flush()
    amounts = {res: float(a) for res, a in demand.items() if a > 0}
    if amounts and s.get_bind().dialect.name == "postgresql":
        stmt = _CLAIM_PG_BACK if back else _CLAIM_PG if generation is None else _CLAIM_PG_AT
        order = sorted(amounts)
        got = stmt.first(s, {"h": host_id, "g": generation, "w": workload_id, "n": len(order), "res": order,
                             "amt": [amounts[r] for r in order]})
        if got is None or got.hosts != 1 or got.resources != len(order):
            raise Stale()  # (what it wrote is rolled back with the caller's transaction or savepoint)
        return _after_claim(s, host_id, workload_id, amounts, gpus, quota_project)
    if back:
        n = _CLAIM_BACK.rowcount(s, {"h": host_id})
    elif generation is None:
        n = _CLAIM_HOST.rowcount(s, {"h": host_id})
    else:
        n = _CLAIM_HOST_AT.rowcount(s, {"h": host_id, "g": generation})
    if n != 1:
        raise Stale()
    if amounts:
        names = tuple(sorted(amounts))
        if _add_within_capacity(names).rowcount(s, _params(host_id, names, amounts)) != len(amounts):
            raise Stale()  # a resource the host lacks, or not enough of it
        _INSERT_ALLOCATIONS.many(s, [{"workload_id": workload_id, "host_id": host_id, "resource": res,
                                      "amount": a} for res, a in amounts.items()])
    return _after_claim(s, host_id, workload_id, amounts, gpus, quota_project)


def _after_claim(s: Session, host_id: int, workload_id: int, amounts: Mapping[str, float],
                 gpus: Sequence[int] | None, quota_project: int | None) -> list[int]:
    """The devices of a `gpu` demand, then the project's quota, once the host and its resources
    are claimed."""
    taken = claim_gpus(s, host_id, workload_id, amounts.get(gpushare.GPU, 0.0), gpus) if amounts else []
    if quota_project is not None:
        quotas.verify(s, quota_project, amounts, 1)
    return taken


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
    """Give back everything the workload holds (on whatever hosts the ledger says) and detach it.
    Each host's change is listed in `s.info[RELEASED]` (see PlacementCache.written)."""
    release_ids(s, w.id, w.host_id, w.group_id)
    w.host_id = None


def release_ids(s: Session, wid: int, host_id: int | None, group_id: int | None, *,
                gpus: bool = True) -> None:
    """release() for a workload known by its ids (a caller that did not load its row); the
    caller detaches or deletes the row. `gpus=False`: the caller read in this transaction that
    the workload holds no GPU device (its device rows are then not looked for)."""
    s.flush()
    by_host: dict[int, dict[str, float]] = {}
    done = s.info.setdefault(RELEASED, [])
    if host_id is not None and s.get_bind().dialect.name == "postgresql":
        gen = None
        for row in _RELEASE_PG.all(s, {"w": wid, "h": host_id}):
            gen = row.gen
            if row.host_id is not None:
                by_host.setdefault(row.host_id, {})[row.resource] = row.amount
        if gen is not None:  # released on its host in that one statement
            done.append((host_id, int(gen), by_host.get(host_id, {}), group_id))
            _release_gpus(s, wid, gpus)
            return
        # allocations on other hosts too (or the host is gone): their rows are deleted, the hosts
        # are released below one by one, in id order
    else:
        for h, resource, amount in _TAKE_HELD.all(s, {"w": wid}):
            by_host.setdefault(h, {})[resource] = amount
    hosts = set(by_host) | ({host_id} if host_id is not None else set())
    # Lock order: the host row first, then its resources, as claim() does; the other order made
    # a concurrent claim and release on one host deadlock on PostgreSQL (each waiting for the
    # other's row until deadlock_timeout, 1 s, aborted one of them). Host rows in id order: a
    # transaction holding several hosts takes them so (store/group.py lock_hosts).
    for h in sorted(hosts):
        gen = _RELEASE_HOST.scalar(s, {"h": h})
        if gen is not None:  # what the caller may write through to its placement view after commit
            done.append((h, int(gen), by_host.get(h, {}), group_id))
    for h in sorted(by_host):
        names = tuple(sorted(by_host[h]))
        _subtract(names).rowcount(s, _params(h, names, by_host[h]))
    _release_gpus(s, wid, gpus)


def _release_gpus(s: Session, wid: int, gpus: bool) -> None:
    devices = _TAKE_GPUS.all(s, {"w": wid}) if gpus else []
    if devices:
        _GPU_GIVE_BACK.many(s, [{"h": h, "d": d, "m": m} for h, d, m in devices])


def guard(s: Session, host_id: int, generation: int) -> None:
    """Bump the host's generation only if it is still `generation` (else Stale): a change that
    spans several ledger operations on one host (preemption: releases, then a claim) starts here,
    which also takes the host row's lock before them, in claim's lock order."""
    s.flush()
    if _GUARD.rowcount(s, {"h": host_id, "g": generation}) != 1:
        raise Stale()


def bump(s: Session, host_id: int) -> None:
    s.flush()
    _BUMP.rowcount(s, {"h": host_id})


def _delta(resources: tuple[str, ...]) -> Any:
    """CASE resource WHEN 'vcpu' THEN :a0 ... END: one UPDATE covers every resource of a host."""
    return case(*((_HR.resource == r, bindparam(f"a{i}", type_=Float)) for i, r in enumerate(resources)),
                else_=0.0)


@lru_cache(maxsize=256)
def _add_within_capacity(resources: tuple[str, ...]) -> Prepared:
    delta = _delta(resources)
    return Prepared(update(_RES)
                    .where(_HR.host_id == bindparam("h"), _HR.resource.in_(resources),
                           _HR.allocated + delta <= _HR.capacity * _HR.overcommit + EPS)
                    .values(allocated=_HR.allocated + delta))


@lru_cache(maxsize=256)
def _subtract(resources: tuple[str, ...]) -> Prepared:
    return Prepared(update(_RES).where(_HR.host_id == bindparam("h"), _HR.resource.in_(resources))
                    .values(allocated=_HR.allocated - _delta(resources)))


def _params(host_id: int, names: tuple[str, ...], amounts: Mapping[str, float]) -> dict[str, Any]:
    return {"h": host_id} | {f"a{i}": float(amounts[n]) for i, n in enumerate(names)}
