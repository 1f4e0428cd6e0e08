"""Batched placement (services/claim_batch.py), as `poolvisor serve` runs it (SQLite, PostgreSQL):
concurrent creates decided and claimed in one transaction never over-allocate, a create that fails inside a
batch (quota, a name taken) fails alone with its own error while the others of its batch are
created, and the placement view written through before the commit still matches the store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import event, select
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, NoValidHostError, PoolvisorError, QuotaExceededError
from poolvisor.services import Services, open_services
from poolvisor.store.rows import HostResourceRow


@pytest.fixture
def batched(db_url: str) -> Iterator[Services]:
    s = open_services(db_url)
    assert s.store.start_group_commit() and s.workloads.start_batching()
    yield s
    s.close()


def view_matches_store(svc: Services) -> None:
    """The write-through view, once refreshed as a decision refreshes it (reloading only the hosts
    whose generation moved since the view saw them), equals a fresh load (allocations and the
    workload table). The refresh is part of the rule: a write-through that finds the view at
    another generation is skipped by design (PlacementCache.written: two releases committed in a
    group may be applied in the other order) and left to it; a view wrong at the store's
    generation would survive it and fail here."""
    view = svc.store.run(svc.ctx.cache.refresh, write=False)
    assert view is not None
    table = view.state.workloads
    alloc, keys = view.state.allocated.copy(), {(k, int(table.host[table.row(k)])) for k in table.rows}
    svc.ctx.cache.invalidate()
    fresh = svc.store.run(svc.ctx.cache.refresh, write=False)
    assert (abs(fresh.state.allocated - alloc) < 1e-9).all()
    table = fresh.state.workloads
    assert {(k, int(table.host[table.row(k)])) for k in table.rows} == keys


def no_over_allocation(svc: Services) -> None:
    rows = svc.store.run(lambda s: s.execute(select(HostResourceRow.allocated, HostResourceRow.capacity,
                                                    HostResourceRow.overcommit)).all(), write=False)
    assert all(a <= c * o + 1e-9 for a, c, o in rows)
    assert svc.repair.check().ok


def together(svc: Services, calls: list[Callable[[], object]]) -> list[object]:
    """Run the calls on threads while the placement cache is held: the first one is taken by the
    batch thread (which then waits for the cache), all the others queue and form the next batch.
    Each call's result or exception, in order."""
    out: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            out[i] = calls[i]()
        except PoolvisorError as e:
            out[i] = e

    def until(cond: Callable[[], bool]) -> None:
        for _ in range(6000):  # a minute at most (a loaded CI machine)
            if cond():
                return
            threading.Event().wait(0.01)
        raise AssertionError(f"the batch did not form: {batcher.taken} taken, {batcher.queued} "
                             f"queued, {out}")

    batcher = svc.workloads.batcher
    assert batcher is not None
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    base = batcher.taken  # (earlier creates of the test went through the batcher too)
    with svc.ctx.cache.lock:
        threads[0].start()
        until(lambda: batcher.taken == base + 1)
        for t in threads[1:]:
            t.start()
        until(lambda: batcher.queued == len(calls) - 1)
    for t in threads:
        t.join(timeout=120)
    return out


def test_concurrent_batched_creates_and_deletes_never_over_allocate(batched: Services) -> None:
    small_cluster(batched, hosts=3, vcpu=4, memory=4096)  # 12 units: the pool fills, placement refuses
    created: list[str] = []
    deleted: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        try:
            for i in range(12):
                name = f"c{k}-{i}"
                try:
                    batched.workloads.create_workload("demo", name, flavor="unit")
                except NoValidHostError:
                    with lock:
                        refused.append(name)
                    continue
                with lock:
                    created.append(name)
                if i % 2:
                    batched.workloads.delete_workload("demo", name)
                    with lock:
                        deleted.append(name)
        except PoolvisorError as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    batcher = batched.workloads.batcher
    assert batcher is not None and batcher.claimed > 0 and batcher.batches > 0
    workloads = batched.workloads.list_workloads("demo")
    assert {w.name for w in workloads} == set(created) - set(deleted)
    assert all(w.state == "running" for w in workloads)
    assert len(workloads) <= 12 and refused
    no_over_allocation(batched)
    view_matches_store(batched)


def test_a_failing_create_fails_alone_inside_a_batch(batched: Services) -> None:
    small_cluster(batched, hosts=3, vcpu=8, memory=8192)
    batched.catalog.create_project("capped")
    batched.quotas.set_quota("capped", {"workloads": 1})
    batched.workloads.create_workload("demo", "taken", flavor="unit")
    calls: list[Callable[[], object]] = [
        lambda: batched.workloads.create_workload("demo", "first", flavor="unit"),  # a batch of its own
        lambda: batched.workloads.create_workload("demo", "a1", flavor="unit"),
        lambda: batched.workloads.create_workload("capped", "q1", flavor="unit"),
        lambda: batched.workloads.create_workload("capped", "q2", flavor="unit"),
        lambda: batched.workloads.create_workload("demo", "taken", flavor="unit"),
        lambda: batched.workloads.create_workload("demo", "dup", flavor="unit"),
        lambda: batched.workloads.create_workload("demo", "dup", flavor="unit"),
        lambda: batched.workloads.create_workload("demo", "a2", flavor="unit"),
    ]
    out = together(batched, calls)
    out = out[1:]
    assert not isinstance(out[0], BaseException) and not isinstance(out[6], BaseException)
    capped = [o for o in out[1:3] if isinstance(o, BaseException)]
    assert len(capped) == 1 and isinstance(capped[0], QuotaExceededError)  # one fits the quota of 1
    assert isinstance(out[3], ConflictError)  # the name existed before
    dups = [o for o in out[4:6] if isinstance(o, BaseException)]
    assert len(dups) == 1 and isinstance(dups[0], ConflictError)  # one of the two got the name
    names = {(w.project, w.name) for w in batched.workloads.list_workloads()}
    assert names == {("demo", "first"), ("demo", "taken"), ("demo", "a1"), ("demo", "a2"), ("demo", "dup"),
                     ("capped", "q1") if not isinstance(out[1], BaseException) else ("capped", "q2")}
    assert all(w.state == "running" for w in batched.workloads.list_workloads())
    batcher = batched.workloads.batcher
    # the quota's claim failed inside the batch, alone (a savepoint), and the batch's others
    # committed; the second "dup" the view already held: it went the lone way, without a claim
    assert batcher is not None and batcher.fallbacks == 1 and batcher.batches == 1
    no_over_allocation(batched)
    view_matches_store(batched)


def test_a_batch_fills_the_pool_exactly(batched: Services) -> None:
    small_cluster(batched, hosts=2, vcpu=2, memory=2048)  # room for 4 units
    out = together(batched, [lambda i=i: batched.workloads.create_workload("demo", f"w{i}", flavor="unit")
                             for i in range(8)])
    placed = [o for o in out if not isinstance(o, BaseException)]
    assert len(placed) == 4  # the batch's decisions saw each other's claims: none over, none wasted
    batcher = batched.workloads.batcher
    assert batcher is not None and batcher.batches == 1 and batcher.claimed == 4 and batcher.fallbacks == 0
    assert all(isinstance(o, NoValidHostError) for o in out if isinstance(o, BaseException))
    no_over_allocation(batched)
    view_matches_store(batched)


def test_a_batchs_only_claim_failing_rolls_the_batch_back_and_goes_the_lone_way(batched: Services) -> None:
    """A batch holding one claim takes no savepoint: when that claim fails after writing (here: a
    fault raised once right after the ledger's statements ran), the whole transaction rolls back,
    nothing of it stays, and the create succeeds the lone way."""
    small_cluster(batched, hosts=2, vcpu=4, memory=4096)
    svc = batched.workloads
    sent: list[str] = []

    def note(_conn, _cur, stmt, *_a) -> None:  # type: ignore[no-untyped-def]
        sent.append(stmt)

    event.listen(batched.store.engine, "before_cursor_execute", note)
    try:
        svc.create_workload("demo", "calm", flavor="unit")  # a batch of one: claimed without a savepoint
    finally:
        event.remove(batched.store.engine, "before_cursor_execute", note)
    assert svc.batcher is not None and svc.batcher.claimed == 1
    assert not [q for q in sent if q.startswith("SAVEPOINT")]
    svc.delete_workload("demo", "calm")
    claim = svc._claim
    failed: list[str] = []

    def once(s, **kw):  # type: ignore[no-untyped-def]
        out = claim(s, **kw)
        if kw["spec"].name == "boom" and not failed:
            failed.append("boom")
            raise ConflictError("injected after the claim's writes")
        return out

    svc._claim = once  # type: ignore[method-assign]
    try:
        got = svc.create_workload("demo", "boom", flavor="unit")
    finally:
        svc._claim = claim  # type: ignore[method-assign]
    assert failed and got.state == "running" and got.host is not None
    batcher = svc.batcher
    assert batcher is not None and batcher.fallbacks == 1 and batcher.rolled_back == 0
    assert batcher.claimed == 1  # ("calm"; "boom" went the lone way)
    assert [(w.name, w.host) for w in svc.list_workloads()] == [("boom", got.host)]
    no_over_allocation(batched)
    view_matches_store(batched)
