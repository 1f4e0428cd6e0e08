"""Hammer a nearly full pool from many threads and several processes: never allocate twice.

Capacity only shrinks during the run (no deletions), so a NoValidHostError means the pool really
was full: the number of acknowledged creations must equal the free slots exactly, and afterwards
the ledger, the hosts' counters and the workload rows must all agree.
"""

from __future__ import annotations

import multiprocessing

import pytest
from sqlalchemy import func, select

from poolvisor.bench.loadgen import LoadResult, run_load, worker_main
from poolvisor.domain.models import GroupPolicy
from poolvisor.services import open_services
from poolvisor.store.rows import AllocationRow, HostResourceRow, WorkloadRow

HOSTS, SLOTS_PER_HOST, PREFILLED = 10, 8, 20  # 80 slots, 60 free
FREE = HOSTS * SLOTS_PER_HOST - PREFILLED


def nearly_full_pool(url: str) -> None:
    s = open_services(url)
    try:
        s.catalog.create_pool("p")
        for i in range(HOSTS):
            s.hosts.create_host(f"h{i}", {"vcpu": SLOTS_PER_HOST, "memory_mib": SLOTS_PER_HOST * 1024},
                                pool="p",
                                domain=f"r{i % 2}")
        s.catalog.create_flavor("unit", {"vcpu": 1, "memory_mib": 1024})
        s.catalog.create_project("demo")
        for i in range(PREFILLED):
            s.workloads.create_workload("demo", f"pre-{i}", flavor="unit")
    finally:
        s.close()


def verify(url: str, acked: list[str]) -> None:
    s = open_services(url, repair=False)
    try:
        report = s.repair.check()
        assert report.ok, report.violations
        names = {w.name for w in s.workloads.list_workloads("demo") if w.state == "running"}
        assert set(acked) <= names  # every acknowledged create exists
        assert len(names) == HOSTS * SLOTS_PER_HOST  # the pool is exactly full, never over
        for h in s.hosts.list_hosts():
            assert h.allocated["vcpu"] <= h.capacity["vcpu"]
            assert h.workloads == SLOTS_PER_HOST

        def sums(sess):
            ledger = sess.scalar(select(func.sum(AllocationRow.amount))
                                 .where(AllocationRow.resource == "vcpu"))
            hosts = sess.scalar(select(func.sum(HostResourceRow.allocated))
                                .where(HostResourceRow.resource == "vcpu"))
            rows = sess.scalar(select(func.count()).select_from(WorkloadRow))
            return ledger, hosts, rows

        ledger, hosts, rows = s.store.run(sums, write=False)
        assert ledger == pytest.approx(hosts) == pytest.approx(HOSTS * SLOTS_PER_HOST)
        assert rows == HOSTS * SLOTS_PER_HOST  # failed creations left no rows behind
    finally:
        s.close()


def hammer(url: str, threads: int, procs: int, per_worker: int) -> LoadResult:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=worker_main, args=(url, "demo", f"p{k}", per_worker, "unit", 2, queue))
                for k in range(procs)]
    for c in children:
        c.start()
    total = LoadResult()
    s = open_services(url, repair=False)
    try:
        total.merge(run_load(s, "demo", "t", threads * 8, "unit", threads=threads))
    finally:
        s.close()
    for _ in children:
        acked, no_host, errors = queue.get(timeout=300)
        total.merge(LoadResult(acked, no_host, errors))
    for c in children:
        c.join(timeout=60)
        assert c.exitcode == 0
    return total


@pytest.mark.parametrize("threads,procs,per_worker", [(16, 3, 40)])  # 248 requests for 60 slots
def test_hammer_nearly_full_pool(db_url, threads, procs, per_worker):
    nearly_full_pool(db_url)
    res = hammer(db_url, threads, procs, per_worker)
    requested = threads * 8 + procs * per_worker
    assert not res.errors
    assert len(res.acked) == FREE
    assert res.no_host == requested - FREE
    assert len(set(res.acked)) == len(res.acked)
    verify(db_url, res.acked)


def test_threads_only_with_anti_affinity_never_share_a_host(db_url):
    """Hard anti-affinity under concurrency: members land on distinct hosts, extras are refused."""
    nearly_full_pool(db_url)
    s = open_services(db_url)
    try:
        import threading

        with_room = sum(1 for h in s.hosts.list_hosts() if h.free["vcpu"] >= 1)
        assert 1 < with_room < HOSTS

        out: list[str] = []
        refused: list[str] = []

        def one(i: int) -> None:
            try:
                w = s.workloads.create_workload("demo", f"aa-{i}", flavor="unit", group="spread",
                                                group_policy="anti-affinity")
                out.append(w.host or "")
            except Exception as e:  # noqa: BLE001 - collected and checked below
                refused.append(type(e).__name__)

        ts = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(out) == len(set(out)) == with_room
        assert refused == ["NoValidHostError"] * (10 - with_room)
        assert s.repair.check().ok
    finally:
        s.close()


def test_concurrent_first_members_of_an_affinity_group_share_one_host(db_url):
    """The group row serializes hard-policy claims: racing first members end up together even while
    unrelated creations keep changing which host the spread policy prefers."""
    import threading

    from poolvisor.policies.placement import PlacementPolicy

    s = open_services(db_url, policy=PlacementPolicy.named("spread"))
    try:
        s.catalog.create_pool("p")
        for i in range(6):
            s.hosts.create_host(f"h{i}", {"vcpu": 64, "memory_mib": 65536}, pool="p")
        s.catalog.create_flavor("unit", {"vcpu": 1, "memory_mib": 1024})
        s.catalog.create_project("demo")
        groups = 4
        hosts: dict[str, set[str]] = {f"g{k}": set() for k in range(groups)}

        def member(k: int, i: int) -> None:
            w = s.workloads.create_workload("demo", f"g{k}-{i}", flavor="unit", group=f"g{k}",
                                            group_policy="affinity")
            hosts[f"g{k}"].add(w.host or "")

        def other(i: int) -> None:
            s.workloads.create_workload("demo", f"o{i}", flavor="unit")

        ts = [threading.Thread(target=member, args=(k, i)) for k in range(groups) for i in range(3)]
        ts += [threading.Thread(target=other, args=(i,)) for i in range(12)]
        for t in ts[::2] + ts[1::2]:
            t.start()
        for t in ts:
            t.join()
        assert all(len(h) == 1 for h in hosts.values()), hosts
        assert len(s.workloads.list_workloads("demo")) == groups * 3 + 12
        assert s.repair.check().ok
    finally:
        s.close()


def test_stale_group_decision_is_rejected_at_commit(lite):
    """Deterministic interleaving: a member decided before another member committed elsewhere must
    not be committed (the host's generation is unchanged, only the group re-check catches it)."""
    from functools import partial

    from poolvisor.store.retry import Stale

    lite.catalog.create_pool("p")
    for i in range(2):
        lite.hosts.create_host(f"h{i}", {"vcpu": 8, "memory_mib": 8192}, pool="p", labels={"n": str(i)})
    lite.catalog.create_project("demo")
    spec = lite.workloads._resolve("demo", "a", "vm", None, {"vcpu": 1}, 0, "grp", GroupPolicy.AFFINITY, {},
                                   {}, None,
                                   False)
    decision, target = lite.workloads._decide(spec)
    assert decision.host == "h0"  # no member yet: anywhere, ties to h0
    # (the group is created by the first claim that commits: b's, with the same policy)
    assert lite.workloads.create_workload("demo", "b", demand={"vcpu": 1}, group="grp",
                                          group_policy="affinity",
                                          required_labels={"n": "1"}).host == "h1"
    with pytest.raises(Stale):
        lite.ctx.write_once(partial(lite.workloads._claim, spec=spec, target=target, decision=decision))
    assert lite.workloads.create_workload("demo", "a", demand={"vcpu": 1}, group="grp").host == "h1"
    assert lite.repair.check().ok
