"""Group commit and batched placement on PostgreSQL with two replicas (two Services on one
database, as two `poolvisor serve` processes): a group or a batch locks every host it touches
first, in host-id order (store/group.py `lock_hosts`), so two replicas' transactions queue instead
of deadlocking; a host the other replica changed between a batch's refresh and its lock is
reloaded and its claims decided again. Never an over-allocation, never a request failed by a
deadlock, every acknowledged create there and every acknowledged delete gone."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from svc_helpers import small_cluster
from test_claim_batch import together

from poolvisor.domain.errors import NoValidHostError, PoolvisorError
from poolvisor.services import Services, claim_batch, open_services, placement_cache
from poolvisor.store.rows import AllocationRow, HostResourceRow, HostRow

pytestmark = pytest.mark.real


@pytest.fixture
def replicas(pg_url: str) -> Iterator[list[Services]]:
    out = [open_services(pg_url) for _ in range(2)]
    for s in out:
        assert s.store.start_group_commit() and s.workloads.start_batching()
    yield out
    for s in out:
        s.close()


def view_follows_store(svc: Services) -> None:
    """The view, once refreshed incrementally (the other replica's changes reloaded by their
    generations), equals a full load: what a batch wrote through matches its host's generation."""
    svc.store.run(svc.ctx.cache.refresh, write=False)
    view = svc.ctx.cache.view
    assert view is not None
    table = view.state.workloads
    alloc, keys = view.state.allocated.copy(), {(k, int(table.host[table.row(k)])) for k in table.rows}
    svc.ctx.cache.invalidate()
    fresh = svc.store.run(svc.ctx.cache.refresh, write=False)
    assert (abs(fresh.state.allocated - alloc) < 1e-9).all()
    table = fresh.state.workloads
    assert {(k, int(table.host[table.row(k)])) for k in table.rows} == keys


def judge(svc: Services) -> None:
    """The invariants, and the ledger against capacity as `bench api` judges it (bench/api.py)."""
    assert svc.repair.check().ok

    def tx(s: Session) -> None:
        ledger: dict[tuple[int, str], float] = defaultdict(float)
        hosts_of: dict[int, set[int]] = defaultdict(set)
        for wid, hid, res, amount in s.execute(select(AllocationRow.workload_id, AllocationRow.host_id,
                                                      AllocationRow.resource, AllocationRow.amount)):
            ledger[(hid, res)] += amount
            hosts_of[wid].add(hid)
        assert all(len(hs) == 1 for hs in hosts_of.values())  # nothing allocated twice
        for hid, res, cap, oc, allocated in s.execute(select(
                HostResourceRow.host_id, HostResourceRow.resource, HostResourceRow.capacity,
                HostResourceRow.overcommit, HostResourceRow.allocated)):
            assert allocated <= cap * oc + 1e-9 and ledger.get((hid, res), 0.0) <= cap * oc + 1e-9
            assert abs(allocated - ledger.get((hid, res), 0.0)) < 1e-9

    svc.store.run(tx, write=False)


def test_two_replicas_batching_on_nearly_full_hosts_never_over_allocate_nor_deadlock(
        replicas: list[Services]) -> None:
    a, b = replicas
    small_cluster(a, hosts=3, vcpu=4, memory=4096)  # 12 units
    for i in range(9):  # nearly full: 3 units left, which the clients below fight over
        a.workloads.create_workload("demo", f"base{i}", flavor="unit")
    created: list[str] = []
    deleted: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        mine, other = replicas[k % 2], replicas[(k + 1) % 2]  # created on one, deleted on the other
        try:
            for i in range(10):
                name = f"c{k}-{i}"
                try:
                    mine.workloads.create_workload("demo", name, flavor="unit")
                except NoValidHostError:  # full right now: refused, never over-allocated
                    with lock:
                        refused.append(name)
                    continue
                with lock:
                    created.append(name)
                other.workloads.delete_workload("demo", name)
                with lock:
                    deleted.append(name)
        except PoolvisorError as e:  # a 409 from retries lost to deadlocks, a 503: none expected
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert created and refused
    alive = {w.name for w in a.workloads.list_workloads("demo")}
    assert alive == {f"base{i}" for i in range(9)} | (set(created) - set(deleted))
    assert all(w.state == "running" for w in b.workloads.list_workloads("demo"))
    for s in replicas:
        batcher, group = s.workloads.batcher, s.store.group
        assert batcher is not None and group is not None
        assert batcher.claimed > 0 and group.groups > 0  # both replicas batched and grouped
        assert batcher.rolled_back == 0 and group.fallbacks == 0  # no transaction lost to a deadlock
    judge(a)
    for s in replicas:
        view_follows_store(s)


def test_a_host_changed_before_the_batch_locks_it_is_reloaded_and_decided_again(
        replicas: list[Services], monkeypatch: pytest.MonkeyPatch) -> None:
    """Replica b fills one of the hosts a's batch chose between a's refresh and a's locks: a finds
    that host moved, reloads it under its lock and places those creates again where room is left
    (or refuses them when there is none), never over the capacity."""
    a, b = replicas
    small_cluster(a, hosts=2, vcpu=3, memory=3072)  # 6 units
    real_lock = claim_batch.lock_hosts
    filled: list[str] = []

    def lock_after_b(s: Session, ids: object) -> dict[int, int]:
        host_ids = sorted(ids)  # type: ignore[call-overload]
        batcher = a.workloads.batcher
        if not filled and batcher is not None and batcher.taken > 1:  # the batch of four below
            name = b.store.run(lambda s2: s2.scalar(select(HostRow.name).where(HostRow.id == host_ids[0])),
                               write=False)
            while True:  # b fills that host (lone claims, committed before a's lock)
                try:
                    b.workloads.create_workload("demo", f"b{len(filled)}", flavor="unit", host=name)
                except NoValidHostError:
                    break
                filled.append(name)
        return real_lock(s, host_ids)

    monkeypatch.setattr(claim_batch, "lock_hosts", lock_after_b)
    calls: list[Callable[[], object]] = [lambda: a.workloads.create_workload("demo", "first", flavor="unit")]
    calls += [lambda i=i: a.workloads.create_workload("demo", f"w{i}", flavor="unit") for i in range(4)]
    out = together(a, calls)
    assert filled  # b took the room of one of the hosts a's batch had chosen
    placed = [o for o in out if not isinstance(o, BaseException)]
    refused = [o for o in out if isinstance(o, BaseException)]
    assert all(isinstance(e, NoValidHostError) for e in refused)
    assert len(placed) + len(filled) == 6 if refused else len(placed) + len(filled) <= 6
    assert a.ctx.cache.lost_races >= 1  # the moved host, passed over for a while
    batcher = a.workloads.batcher
    assert batcher is not None and batcher.rolled_back == 0 and batcher.claimed >= 2
    judge(a)
    view_follows_store(a)


def _bump(host_id: int, pause_s: float = 0.0) -> Callable[[Session], int]:
    def fn(s: Session) -> int:
        s.execute(text("UPDATE hosts SET generation = generation + 1 WHERE id = :h"), {"h": host_id})
        time.sleep(pause_s)  # (holding the row: the other replica's group reaches its first row meanwhile)
        return host_id

    return fn


def test_two_replicas_groups_touching_hosts_in_opposite_orders_do_not_deadlock(
        replicas: list[Services]) -> None:
    """Replica a's group writes host 1 then host 2, replica b's host 2 then host 1: taken in item
    order, each would hold one row and wait for the other's (a deadlock: one group rolled back
    and run again item by item). Declared, both groups lock the rows in id order first: one waits
    for the other, both commit as groups."""
    a, b = replicas
    small_cluster(a, hosts=2)
    h1, h2 = sorted(a.store.run(lambda s: list(s.scalars(select(HostRow.id))), write=False))
    gates = [threading.Event(), threading.Event()]
    results: list[list[object]] = [[], []]

    def blocker(gate: threading.Event) -> Callable[[Session], None]:
        return lambda _s: gate.wait(30) and None

    def answered(i: int) -> Callable[[object, BaseException | None], None]:
        return lambda v, e: results[i].append(e if e is not None else v)

    for i, (svc, order) in enumerate(((a, (h1, h2)), (b, (h2, h1)))):
        group = svc.store.group
        assert group is not None
        group.submit(blocker(gates[i]), answered(i))  # the writer waits here while the others queue
        while group.taken < 1:
            time.sleep(0.001)
        for h in order:
            group.submit(_bump(h, 0.3), answered(i), (h,))
    for g in gates:
        g.set()
    deadline = time.monotonic() + 60
    while any(len(r) < 3 for r in results) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results == [[None, h1, h2], [None, h2, h1]]
    for svc in replicas:
        group = svc.store.group
        assert group is not None and group.fallbacks == 0 and group.groups == 1


def test_a_host_the_other_replica_fills_is_reloaded_later_and_exactly_when_chosen(
        replicas: list[Services], monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's refresh puts off reloading a host the other replica is filling (passed over
    anyway: placement_cache.py `refresh(defer=True)`), so a's view of it is older than the store;
    when nothing else fits and a's batch chooses it all the same, its lock finds it moved: reloaded
    there and decided again on what is really free, never over the capacity."""
    monkeypatch.setattr(placement_cache, "CONTENDED_S", 600.0)  # (the steps below take any time)
    monkeypatch.setattr(placement_cache, "DEFER_S", 600.0)
    a, b = replicas
    small_cluster(a, hosts=2, vcpu=4, memory=4096)  # 4 units per host
    mine = a.workloads.create_workload("demo", "a0", flavor="unit").host
    theirs = next(h.name for h in a.hosts.list_hosts() if h.name != mine)
    b.workloads.create_workload("demo", "b0", flavor="unit", host=theirs)
    assert a.workloads.create_workload("demo", "a1", flavor="unit").host == mine  # b's host: passed over
    cache = a.ctx.cache
    assert cache.contended(_host_id(a, theirs))
    for i in (1, 2):
        b.workloads.create_workload("demo", f"b{i}", flavor="unit", host=theirs)  # 3 of its 4 units
    assert a.workloads.create_workload("demo", "a2", flavor="unit").host == mine
    assert cache.deferred >= 1  # that refresh did not reload b's host: a's view holds it with b0 only
    view = cache.view
    assert view is not None and view.state.workload_count[view.index_of[_host_id(a, theirs)]] == 1
    assert a.workloads.create_workload("demo", "a3", flavor="unit").host == mine  # a's host is full now
    assert a.workloads.create_workload("demo", "a4", flavor="unit").host == theirs  # its last unit
    with pytest.raises(NoValidHostError):
        a.workloads.create_workload("demo", "a5", flavor="unit")
    batcher = a.workloads.batcher
    assert batcher is not None and batcher.rolled_back == 0
    judge(a)
    view_follows_store(a)


def _host_id(svc: Services, name: str) -> int:
    return int(svc.store.run(lambda s: s.scalar(select(HostRow.id).where(HostRow.name == name)), write=False))
