"""The pending-creation queue: a create that does not fit waits, and is placed in its pool's
discipline order when capacity frees; refused requests are dropped with a reason."""

from __future__ import annotations

import time

from poolvisor.observability.instruments import QUEUE_DEPTH
from poolvisor.services import Services
from poolvisor.services.queue import QueueLoop

UNIT = {"vcpu": 1, "memory_mib": 1024}


def pool(s: Services, slots: int = 2) -> None:
    s.catalog.create_pool("p")
    s.hosts.create_host("h0", {"vcpu": slots, "memory_mib": slots * 1024}, pool="p")
    for p in ("a", "b"):
        s.catalog.create_project(p)


def test_waits_then_placed_when_capacity_frees(lite):
    pool(lite)
    for i in range(2):
        w, q = lite.queue.create_or_wait("a", f"w{i}", demand=UNIT, pool="p")
        assert w is not None and q is None
    w, q = lite.queue.create_or_wait("a", "late", demand=UNIT, pool="p", priority_class="spot")
    assert w is None and q is not None and "no valid host" in (q.last_error or "")
    assert [p.name for p in lite.queue.list_pending()] == ["late"]
    assert lite.queue.depth()["spot"] == 1
    assert QUEUE_DEPTH.labels(priority_class="spot")._value.get() == 1
    assert lite.queue.drain().placed == []  # still full: it keeps waiting
    assert lite.queue.list_pending()[0].attempts == 2
    lite.workloads.delete_workload("a", "w0")
    res = lite.queue.drain()
    assert res.placed == ["a/late"] and res.waiting == 0
    late = lite.workloads.get_workload("a", "late")
    assert late.state == "running" and late.priority_class == "spot"
    kinds = {e.kind for e in lite.events.list_events("a")}
    assert {"workload.queued", "workload.dequeued"} <= kinds
    assert QUEUE_DEPTH.labels(priority_class="spot")._value.get() == 0


def test_strict_priority_serves_the_higher_class_first(lite):
    pool(lite, slots=1)
    lite.workloads.create_workload("a", "full", demand=UNIT, pool="p", priority_class="system")
    lite.queue.enqueue("a", "low1", demand=UNIT, pool="p", priority_class="low")
    lite.queue.enqueue("b", "high1", demand=UNIT, pool="p", priority_class="high")
    lite.workloads.delete_workload("a", "full")
    assert lite.queue.drain().placed == ["b/high1"]  # the low one still waits
    assert [p.name for p in lite.queue.list_pending()] == ["low1"]


def test_fifo_and_round_robin_per_pool(lite):
    pool(lite, slots=2)
    lite.workloads.create_workload("a", "f0", demand={"vcpu": 2, "memory_mib": 2048}, pool="p",
                                   priority_class="system")
    lite.queue.enqueue("a", "a1", demand=UNIT, pool="p")
    lite.queue.enqueue("a", "a2", demand=UNIT, pool="p")
    lite.queue.enqueue("b", "b1", demand=UNIT, pool="p")
    lite.queue.set_discipline("p", "round-robin")
    lite.workloads.delete_workload("a", "f0")
    assert lite.queue.drain().placed == ["a/a1", "b/b1"]
    lite.queue.set_discipline("p", "fifo")
    lite.workloads.delete_workload("b", "b1")
    assert lite.queue.drain().placed == ["a/a2"]


def test_ps_n_serves_the_project_with_fewer_running_workloads(lite):
    pool(lite, slots=4)
    lite.catalog.create_project("c")
    for project, name in (("a", "r1"), ("a", "r2"), ("b", "r1"), ("c", "filler")):
        lite.workloads.create_workload(project, name, demand=UNIT, pool="p")
    lite.queue.enqueue("a", "qa", demand=UNIT, pool="p")  # earlier, but a runs 2: P = S/2
    lite.queue.enqueue("b", "qb", demand=UNIT, pool="p")  # b runs 1: P = S/1, served first
    lite.queue.set_discipline("p", "ps-n")
    lite.workloads.delete_workload("c", "filler")  # one slot
    assert lite.queue.drain().placed == ["b/qb"]
    lite.queue.set_discipline("p", "fifo")  # the same queue in arrival order would have taken qa
    lite.workloads.delete_workload("b", "qb")
    assert lite.queue.drain().placed == ["a/qa"]


def test_a_request_refused_for_good_is_dropped_with_a_reason(lite):
    pool(lite, slots=1)
    lite.workloads.create_workload("a", "full", demand=UNIT, pool="p")
    lite.queue.enqueue("a", "later", demand=UNIT, pool="p")
    lite.workloads.delete_workload("a", "full")
    lite.quotas.set_quota("a", {"workloads": 0})
    res = lite.queue.drain()
    assert res.dropped == ["a/later"] and lite.queue.list_pending() == []
    ev = [e for e in lite.events.list_events("a") if e.kind == "queue.dropped"]
    assert ev and "quota" in ev[0].message


def test_the_loop_drains_only_as_leader(lite):
    pool(lite, slots=1)
    lite.workloads.create_workload("a", "full", demand=UNIT, pool="p")
    lite.queue.enqueue("a", "later", demand=UNIT, pool="p")
    lite.workloads.delete_workload("a", "full")
    leader = [False]
    loop = QueueLoop(lite.queue, 0.05, is_leader=lambda: leader[0])
    loop.start()
    try:
        time.sleep(0.3)
        assert [p.name for p in lite.queue.list_pending()] == ["later"]  # not the leader: untouched
        leader[0] = True
        deadline = time.monotonic() + 10
        while lite.queue.list_pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lite.workloads.get_workload("a", "later").state == "running"
    finally:
        loop.stop()
