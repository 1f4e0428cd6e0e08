"""The pool allocation history rebuilt from the audit log matches the allocation seen at each moment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from poolvisor.services import Services, open_services
from poolvisor.services.records import EventRecord
from poolvisor.ui.history import AllocationHistory, allocation_history, pool_allocation, pool_measured


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'h.db'}")
    for pool in ("p", "q"):
        s.catalog.create_pool(pool)
        for i in range(2):
            s.hosts.create_host(f"{pool}{i}", {"vcpu": 8, "memory_mib": 8192}, pool=pool)
    s.catalog.create_flavor("one", {"vcpu": 1, "memory_mib": 1024})
    s.catalog.create_flavor("two", {"vcpu": 2, "memory_mib": 512})
    s.catalog.create_project("a")
    yield s
    s.close()


def value_at(h: AllocationHistory, t: float) -> dict[str, float]:
    """The step function at t: the last point at or before t."""
    k = max(i for i, x in enumerate(h.times) if x <= t)
    return {r: v[k] for r, v in h.allocated.items()}


def test_rebuilt_history_matches_snapshots(svc: Services) -> None:
    snaps: list[tuple[float, dict[str, float]]] = []

    def snap() -> None:
        time.sleep(0.002)
        snaps.append((time.time(), dict(svc.catalog.get_pool("p").allocated)))
        time.sleep(0.002)

    snap()
    svc.workloads.create_workload("a", "w1", flavor="one", pool="p")
    snap()
    svc.workloads.create_workload("a", "w2", flavor="two")  # no pool: it may move between pools
    snap()
    svc.workloads.create_workload("a", "x1", flavor="two", pool="q")  # another pool: no change here
    snap()
    svc.workloads.workload_action("a", "w1", "stop")  # holds its allocation
    snap()
    svc.workloads.delete_workload("a", "w1")
    snap()
    for target in ("p0", "p1", "q0", "p0"):  # into, inside, out of and back into the pool
        if svc.workloads.get_workload("a", "w2").host != target:
            svc.workloads.migrate_workload("a", "w2", target)
        snap()
    svc.workloads.create_workload("a", "w3", demand={"vcpu": 3, "memory_mib": 100}, pool="p")
    snap()
    svc.sim.fail_host(svc.workloads.get_workload("a", "w3").host or "")  # lost: released
    snap()
    svc.workloads.delete_workload("a", "w3")  # deleting a lost workload releases nothing more
    snap()

    hosts = {h.name for h in svc.hosts.list_hosts("p")}
    h = pool_allocation(svc, dict(svc.catalog.get_pool("p").allocated), hosts, time.time())
    assert h.complete and h.stopped_by is None
    assert h.times == sorted(h.times)
    for t, want in snaps:
        got = value_at(h, t)
        assert got["vcpu"] == pytest.approx(want["vcpu"]) and got["memory_mib"] == pytest.approx(
            want["memory_mib"]), (t, got, want)
    seen = [s[1]["vcpu"] for s in snaps]
    assert len(set(seen)) >= 4 and seen[0] == 0, seen  # the walk went through real changes


def ev(i: int, kind: str, subject: str, **data: object) -> EventRecord:
    return EventRecord(i, datetime.fromtimestamp(1_000 + i, UTC), kind, subject, kind, "a", dict(data))


def test_the_walk_stops_where_the_log_cannot_say() -> None:
    events_old_first = [
        ev(1, "workload.deleted", "workload/a/old", host="h0"),  # placed before the window: unknown
        ev(2, "workload.placed", "workload/a/w", host="h0", demand={"vcpu": 2}),
        ev(3, "workload.created", "workload/a/w", host="h0"),
    ]
    h = allocation_history(list(reversed(events_old_first)), {"h0"}, {"vcpu": 2.0}, 2_000.0)
    assert not h.complete and "workload.deleted of workload/a/old" in (h.stopped_by or "")
    assert h.times == [1_002.0, 2_000.0] and h.allocated["vcpu"] == [2.0, 2.0]
    # a repair's effect is not in its event: stop there too, with everything after it exact
    events_old_first[0] = ev(1, "workload.repaired", "workload/a/old")
    h = allocation_history(list(reversed(events_old_first)), {"h0"}, {"vcpu": 2.0}, 2_000.0)
    assert not h.complete and h.allocated["vcpu"][-1] == 2.0
    # without it, the window starts before the placement, at zero
    h = allocation_history(list(reversed(events_old_first[1:])), {"h0"}, {"vcpu": 2.0}, 2_000.0)
    assert h.complete and h.times == [1_002.0, 1_002.0, 2_000.0] and h.allocated["vcpu"] == [0.0, 2.0, 2.0]


def test_measured_use_sums_samples_times_vcpu(svc: Services) -> None:
    svc.workloads.create_workload("a", "w1", flavor="one", pool="p")
    svc.workloads.create_workload("a", "w2", flavor="two", pool="p")
    svc.workloads.create_workload("a", "w3", flavor="two", pool="p")  # no samples
    t0 = 1_700_000_100.0
    svc.utilization.record_utilization([(("a", "w1"), t0, 0.5), (("a", "w2"), t0, 0.25),
                                        (("a", "w1"), t0 + 300, 1.0), (("a", "w2"), t0 + 300, 0.5)])
    m = pool_measured(svc, {"p0", "p1"}, svc.workloads.list_workloads(), 300.0, steps=2)
    assert (m.measured, m.running) == (2, 3)
    assert m.vcpu == pytest.approx([0.5 * 1 + 0.25 * 2, 1.0 * 1 + 0.5 * 2])
    assert m.times[1] - m.times[0] == 300.0
    assert pool_measured(svc, {"q0"}, svc.workloads.list_workloads()).running == 0
