"""ledger.claim's guards, on SQLite and PostgreSQL (where a claim is one statement of CTEs): a
claim lands whole or raises Stale, and the caller's rollback leaves the host as it was."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from svc_helpers import small_cluster

from poolvisor.services import Services, ledger
from poolvisor.store.retry import Stale
from poolvisor.store.rows import AllocationRow, HostResourceRow, HostRow, WorkloadRow


def _state(svc: Services) -> tuple:
    def tx(s: Session) -> tuple:
        h = s.execute(select(HostRow.generation, HostRow.workloads).where(HostRow.name == "h0")).one()
        res = dict(s.execute(select(HostResourceRow.resource, HostResourceRow.allocated)
                             .join(HostRow).where(HostRow.name == "h0", HostResourceRow.allocated > 0)).all())
        n = s.scalar(select(func.count()).select_from(AllocationRow))
        return tuple(h), res, n

    return svc.store.run(tx, write=False)


def _with_a_bare_workload(svc: Services) -> tuple[int, int]:
    """h0 holding workload `w` (1 vcpu, 1024 MiB), and the id of workload `x`, whose claim was
    released (no allocation: the tests claim for it)."""
    for name in ("w", "x"):
        svc.workloads.create_workload("demo", name, flavor="unit")

    def tx(s: Session) -> tuple[int, int]:
        hid, xid = s.execute(select(WorkloadRow.host_id, WorkloadRow.id).where(WorkloadRow.name == "x")).one()
        ledger.release_ids(s, xid, hid, None)
        s.execute(update(WorkloadRow).where(WorkloadRow.id == xid).values(host_id=None))
        return hid, xid

    return svc.store.run(tx)


def test_a_claim_lands_whole_or_raises_stale(svc: Services) -> None:
    small_cluster(svc, hosts=1)  # h0: 4 vcpu, 4096 MiB
    hid, wid = _with_a_bare_workload(svc)
    before = _state(svc)
    (gen, count), res, n = before
    assert count == 1 and res == {"vcpu": 1.0, "memory_mib": 1024.0} and n == 2

    def claim(**kw):  # claimed in a transaction that commits only when asked to
        def tx(s: Session) -> list[int]:
            return ledger.claim(s, hid, kw.pop("gen", None), kw.pop("demand"), wid, **kw)
        return svc.store.run_once(tx, write=True)

    for bad in (dict(demand={"vcpu": 4.0}, gen=gen),  # more than is left
                dict(demand={"vcpu": 1.0, "bogus": 1.0}, gen=gen),  # a resource the host lacks
                dict(demand={"vcpu": 1.0}, gen=gen + 1)):  # another generation
        with pytest.raises(Stale):
            claim(**bad)
        assert _state(svc) == before, bad  # nothing of it is left
    claim(demand={"vcpu": 3.0, "memory_mib": 1024.0}, gen=gen)  # exactly what is left of vcpu
    (gen2, count2), res2, n2 = _state(svc)
    assert (gen2, count2, n2) == (gen + 1, 2, 4) and res2 == {"vcpu": 4.0, "memory_mib": 2048.0}
    rows = svc.store.run(lambda s: sorted(s.execute(select(AllocationRow.resource, AllocationRow.amount)
                                                    .where(AllocationRow.workload_id == wid)).all()),
                         write=False)
    assert [tuple(r) for r in rows] == [("memory_mib", 1024.0), ("vcpu", 3.0)]


def test_a_host_not_up_takes_only_its_own_workload_back(svc: Services) -> None:
    small_cluster(svc, hosts=1)
    hid, wid = _with_a_bare_workload(svc)
    svc.store.run(lambda s: s.execute(update(HostRow).values(state="maintenance")))
    before = _state(svc)
    with pytest.raises(Stale):
        svc.store.run_once(lambda s: ledger.claim(s, hid, None, {"vcpu": 1.0}, wid), write=True)
    assert _state(svc) == before
    svc.store.run_once(lambda s: ledger.claim(s, hid, None, {"vcpu": 1.0}, wid, back=True), write=True)
    (_gen, count), res, n = _state(svc)
    assert count == 2 and res == {"vcpu": 2.0, "memory_mib": 1024.0} and n == 3


def test_a_release_gives_back_what_the_ledger_holds_on_every_host(svc: Services) -> None:
    """One host (PostgreSQL: one statement), and a workload holding allocations on two hosts
    (the rows deleted in that statement, the hosts then released one by one)."""
    small_cluster(svc, hosts=2)
    hid, wid = _with_a_bare_workload(svc)
    (gen, count), res, n = _state(svc)

    def release(s: Session) -> list:
        ledger.release_ids(s, wid, hid, None)
        return list(s.info[ledger.RELEASED])

    svc.store.run(lambda s: ledger.claim(s, hid, None, {"vcpu": 2.0, "memory_mib": 512.0}, wid))
    assert svc.store.run(release) == [(hid, gen + 2, {"vcpu": 2.0, "memory_mib": 512.0}, None)]
    assert _state(svc) == ((gen + 2, count), res, n)
    other = svc.store.run(lambda s: s.scalar(select(HostRow.id).where(HostRow.id != hid)), write=False)
    svc.store.run(lambda s: ledger.claim(s, hid, None, {"vcpu": 1.0}, wid))
    svc.store.run(lambda s: ledger.claim(s, other, None, {"memory_mib": 256.0}, wid))
    g_other = svc.store.run(lambda s: s.scalar(select(HostRow.generation).where(HostRow.id == other)),
                            write=False)
    got = svc.store.run(release)
    want = [(hid, gen + 4, {"vcpu": 1.0}, None), (other, g_other + 1, {"memory_mib": 256.0}, None)]
    assert sorted(got, key=lambda r: r[0]) == sorted(want, key=lambda r: r[0])
    assert _state(svc) == ((gen + 4, count), res, n)
    assert svc.store.run(lambda s: s.scalars(select(HostResourceRow.allocated).where(
        HostResourceRow.host_id == other)).all(), write=False) == pytest.approx([0.0] * 5)
    assert svc.store.run(release) == [(hid, gen + 5, {}, None)]  # nothing held: the host's count only
