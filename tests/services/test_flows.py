"""Creates and deletes run by the writer thread, no thread waiting (services/flow.py), as the async
routes of `poolvisor serve` run them on SQLite: a delete's mark and finish, and a create's claim
and confirmation, each share one transaction with the other requests of their round; under many
concurrent flows the pool is never over-allocated and the placement view equals a fresh load; a
request that fails inside a batch fails alone; a slow driver's call runs off the writer thread,
which meanwhile goes on with the others."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from svc_helpers import small_cluster
from test_claim_batch import no_over_allocation, view_matches_store

from poolvisor.domain.errors import ConflictError, NotFoundError, NoValidHostError, PoolvisorError
from poolvisor.drivers.base import DriverError
from poolvisor.services import Services, open_services
from poolvisor.services.flow import Flow, FlowRunner


@pytest.fixture
def served(db_url: str) -> Iterator[Services]:
    s = open_services(db_url)
    assert s.store.start_group_commit() and s.workloads.start_batching()
    yield s
    s.close()


class Outcome:
    """A flow's answer, waited for by the test (the writer thread calls `done`)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = ""

    def done(self, value: Any, error: BaseException | None) -> None:
        self.value, self.error, self.thread = value, error, threading.current_thread().name
        self.event.set()

    def wait(self) -> Outcome:
        assert self.event.wait(120), "the flow never ended"
        return self


def runner(svc: Services) -> FlowRunner:
    flows = svc.workloads.flows
    assert flows is not None
    return flows


def start(svc: Services, flow: Flow[Any]) -> Outcome:
    out = Outcome()
    runner(svc).start(flow, out.done)
    return out


def create(svc: Services, project: str, name: str) -> Outcome:
    return start(svc, svc.workloads.create_flow(project, name, flavor="unit"))


def delete(svc: Services, project: str, name: str) -> Outcome:
    return start(svc, svc.workloads.lifecycle.delete_flow(project, name))


def queued_together(svc: Services, starts: list[Any]) -> list[Outcome]:
    """Start the flows while this process's SQLite writer lock is held: the writer thread takes
    the first round and waits on the lock, every other flow queues, and they form the next round."""
    group = svc.store.group
    assert group is not None
    with svc.store._writer:
        first = starts[0]()
        for _ in range(6000):
            if group.worker.queued() == 0:
                break
            threading.Event().wait(0.01)
        rest = [s() for s in starts[1:]]
    return [o.wait() for o in [first, *rest]]


def test_flows_create_and_delete_concurrently_without_over_allocation(served: Services) -> None:
    small_cluster(served, hosts=3, vcpu=4, memory=4096)  # 12 units: the pool fills, placement refuses
    group = served.store.group
    assert group is not None
    groups_before = group.groups
    creates = {f"w{i}": create(served, "demo", f"w{i}") for i in range(30)}  # all at once, no waiting
    made = {n for n, o in creates.items() if o.wait().error is None}
    refused = [o.error for o in creates.values() if o.error is not None]
    assert len(made) == 12 and all(isinstance(e, NoValidHostError) for e in refused)
    gone = sorted(made)[::2]
    deletes = [delete(served, "demo", n) for n in gone]
    more = {f"x{i}": create(served, "demo", f"x{i}") for i in range(10)}  # while the deletes run
    assert all(o.wait().error is None for o in deletes)
    made |= {n for n, o in more.items() if o.wait().error is None}
    assert all(isinstance(o.error, NoValidHostError) for o in more.values() if o.error is not None)
    names = {w.name for w in served.workloads.list_workloads("demo")}
    assert names == made - set(gone) and len(names) <= 12
    assert all(w.state == "running" for w in served.workloads.list_workloads("demo"))
    assert group.groups > groups_before  # marks, finishes and confirmations shared commits
    assert runner(served).inline_calls > 0  # the sim driver ran on the writer thread
    no_over_allocation(served)
    view_matches_store(served)


def test_a_failing_delete_or_create_fails_alone_in_its_round(served: Services) -> None:
    small_cluster(served, hosts=3, vcpu=8, memory=8192)
    for n in ("a", "b", "c"):
        served.workloads.create_workload("demo", n, flavor="unit")
    out = queued_together(served, [
        lambda: create(served, "demo", "first"),  # the round the writer waits in
        lambda: delete(served, "demo", "a"),
        lambda: delete(served, "demo", "nobody"),  # 404, alone
        lambda: delete(served, "demo", "b"),
        lambda: create(served, "demo", "c"),  # 409: the name is taken
        lambda: create(served, "demo", "d"),
    ])
    assert [o.error is None for o in out] == [True, True, False, True, False, True]
    assert isinstance(out[2].error, NotFoundError) and isinstance(out[4].error, ConflictError)
    assert {w.name for w in served.workloads.list_workloads("demo")} == {"first", "c", "d"}
    no_over_allocation(served)
    view_matches_store(served)


def test_a_driver_failure_in_a_round_undoes_only_its_own_create(served: Services) -> None:
    small_cluster(served, hosts=1, vcpu=8, memory=8192)
    served.workloads.create_workload("demo", "warm", flavor="unit")  # binds the host's driver
    served.drivers.default.inject("create", "h0", times=1)  # type: ignore[attr-defined]
    out = queued_together(served, [lambda i=i: create(served, "demo", f"w{i}") for i in range(5)])
    failed = [o for o in out if o.error is not None]
    assert len(failed) == 1 and isinstance(failed[0].error, DriverError)
    names = {w.name for w in served.workloads.list_workloads("demo")}
    assert len(names) == 5 and all(w.state == "running" for w in served.workloads.list_workloads("demo"))
    no_over_allocation(served)
    view_matches_store(served)


def test_a_slow_driver_runs_off_the_writer_which_goes_on(served: Services) -> None:
    small_cluster(served, hosts=2, vcpu=8, memory=8192)
    served.workloads.create_workload("demo", "slow", flavor="unit")
    sim = served.drivers.default
    sim.durations["delete"] = 1.0  # type: ignore[attr-defined]
    slow = delete(served, "demo", "slow")
    quick = create(served, "demo", "quick").wait()  # done while the slow delete's driver works
    assert quick.error is None and not slow.event.is_set()
    assert slow.wait().error is None
    assert runner(served).offloaded >= 1
    assert {w.name for w in served.workloads.list_workloads("demo")} == {"quick"}
    no_over_allocation(served)


def test_sync_callers_still_share_the_writer(served: Services) -> None:
    """The CLI, the dashboard and the queue call the same flows synchronously: same outcomes."""
    small_cluster(served, hosts=1, vcpu=2, memory=2048)
    errors: list[PoolvisorError] = []

    def client(k: int) -> None:
        try:
            for i in range(5):
                try:
                    served.workloads.create_workload("demo", f"s{k}-{i}", flavor="unit")
                except NoValidHostError:
                    continue
                served.workloads.delete_workload("demo", f"s{k}-{i}")
        except PoolvisorError as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and served.workloads.list_workloads("demo") == []
    no_over_allocation(served)
    view_matches_store(served)
