"""Cancelling tasks in the services: a running migration aborts through the driver's handle and
the workload stays on its source; a consolidation stops its current move and runs no further one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError
from poolvisor.services import Services, open_services

MIBPS = 1024.0  # a unit workload (1024 MiB) takes 1 s to migrate


@pytest.fixture
def slow(sqlite_url: str) -> Iterator[Services]:
    s = open_services(sqlite_url, driver_options={"migration_bandwidth_mibps": MIBPS})
    yield s
    s.close()


def run_in_thread(s: Services, tid: int) -> threading.Thread:
    assert tid in s.tasks.claim_tasks(5)
    t = threading.Thread(target=s.tasks.run_task, args=(tid,))
    t.start()
    return t


def wait_for(pred, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end
        time.sleep(0.02)


def test_cancel_aborts_a_running_migration(slow: Services) -> None:
    small_cluster(slow)
    w = slow.workloads.create_workload("demo", "vm1", flavor="unit")
    t = slow.workloads.submit_migrate("demo", "vm1")
    th = run_in_thread(slow, t.id)
    wait_for(lambda: slow.tasks.get_task(t.id).progress > 0.2)
    assert slow.workloads.get_workload("demo", "vm1").state == "migrating"
    assert slow.tasks.cancel_task(t.id).state == "running"  # requested; the running task aborts
    th.join(10)
    done = slow.tasks.get_task(t.id)
    assert done.state == "cancelled" and "cancelled, back on" in (done.error or "") and done.progress < 1
    back = slow.workloads.get_workload("demo", "vm1")
    assert (back.state, back.host) == ("running", w.host)
    assert slow.driver.stats(w.host).states == {"demo/vm1": "running"}
    with pytest.raises(ConflictError, match="already cancelled"):
        slow.tasks.cancel_task(t.id)
    assert slow.repair.check().ok


def test_cancel_stops_a_consolidation_before_its_next_move(slow: Services) -> None:
    small_cluster(slow, hosts=3)
    for i in range(3):  # one workload per host, so the consolidation has moves to make
        if slow.workloads.create_workload("demo", f"w{i}", flavor="unit").host != f"h{i}":
            slow.workloads.migrate_workload("demo", f"w{i}", f"h{i}")
    before = {w.name: w.host for w in slow.workloads.list_workloads("demo")}
    assert sorted(before.values()) == ["h0", "h1", "h2"]
    t = slow.batch.submit_consolidation("p")
    th = run_in_thread(slow, t.id)
    wait_for(lambda: any(c.parent == t.id and c.progress > 0.2 for c in slow.tasks.list_tasks()))
    slow.tasks.cancel_task(t.id)
    th.join(15)
    done = slow.tasks.get_task(t.id)
    assert done.state == "cancelled" and (done.error or "").startswith("cancelled after"), done
    children = [c for c in slow.tasks.list_tasks() if c.parent == t.id]
    assert [c.state for c in children] == ["cancelled"]  # the move in flight aborted, no other ran
    assert {w.name: w.host for w in slow.workloads.list_workloads("demo")} == before
    assert slow.repair.check().ok
