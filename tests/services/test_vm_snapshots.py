"""Snapshots as tasks on the sim driver: take, list, restore, delete; refusals; crash resume."""

from __future__ import annotations

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.drivers.base import DriverError
from poolvisor.drivers.protocols import UnsupportedByDriver
from poolvisor.services import Services
from poolvisor.store.rows import TaskRow


def run(svc: Services, task_id: int):
    assert task_id in svc.tasks.claim_tasks(10)
    t = svc.tasks.run_task(task_id)
    assert t is not None
    return t


def test_take_list_restore_delete(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    t = lite.snapshots.submit_create("demo", "vm1", "clean")
    assert t.kind == "snapshot" and t.state == "queued"
    [s] = lite.snapshots.list("demo", "vm1")
    assert (s.name, s.state, s.host) == ("clean", "creating", w.host)
    done = run(lite, t.id)
    assert done.state == "succeeded" and done.result == {"workload": "demo/vm1", "snapshot": "clean",
                                                         "host": w.host, "size_bytes": 1024 << 20}
    [s] = lite.snapshots.list("demo", "vm1")
    assert (s.state, s.workload_state, s.size_bytes) == ("ready", "running", 1024 << 20)

    lite.workloads.workload_action("demo", "vm1", "stop")
    r = run(lite, lite.snapshots.submit_restore("demo", "vm1", "clean").id)
    assert r.state == "succeeded" and r.result is not None and r.result["state"] == "running"
    assert lite.workloads.get_workload("demo", "vm1").state == "running"
    assert lite.driver.stats(w.host).states == {"demo/vm1": "running"}
    kinds = [e.kind for e in lite.events.list_events("demo")]
    assert "snapshot.created" in kinds and "snapshot.restored" in kinds

    with pytest.raises(ConflictError, match="already has a snapshot"):
        lite.snapshots.submit_create("demo", "vm1", "clean")
    lite.snapshots.delete("demo", "vm1", "clean")
    assert lite.snapshots.list("demo", "vm1") == [] and lite.driver.snapshot_list(w.host, _dw()) == []
    with pytest.raises(NotFoundError):
        lite.snapshots.delete("demo", "vm1", "clean")
    with pytest.raises(NotFoundError):
        lite.snapshots.submit_restore("demo", "vm1", "clean")
    assert lite.repair.check().ok


def _dw():
    from poolvisor.drivers.base import DriverWorkload

    return DriverWorkload("demo/vm1", "vm", {})


def test_busy_workloads_and_drivers_without_snapshots_are_refused(lite: Services) -> None:
    small_cluster(lite)
    lite.workloads.create_workload("demo", "vm1", flavor="unit")
    t = lite.snapshots.submit_create("demo", "vm1", "a")
    with pytest.raises(ConflictError, match="snapshot task in progress"):
        lite.snapshots.submit_create("demo", "vm1", "b")
    with pytest.raises(ConflictError, match="snapshot task in progress"):
        lite.workloads.submit_migrate("demo", "vm1")  # no migration while a snapshot runs
    run(lite, t.id)
    m = lite.workloads.submit_migrate("demo", "vm1")
    with pytest.raises(ConflictError, match="migrate task in progress"):
        lite.snapshots.submit_create("demo", "vm1", "b")
    run(lite, m.id)
    # a sim host that does not declare snapshots (like an LXC host) refuses at once
    host = lite.workloads.get_workload("demo", "vm1").host
    assert host is not None
    sim = lite.drivers.driver_of(host)
    sim.capabilities = frozenset(c for c in sim.capabilities if c != "snapshots")  # type: ignore[misc]
    with pytest.raises(UnsupportedByDriver, match=f"of host {host} cannot take snapshots"):
        lite.snapshots.submit_create("demo", "vm1", "b")
    assert [s.name for s in lite.snapshots.list("demo", "vm1")] == ["a"]


def test_a_failing_driver_and_a_cancel_leave_no_stale_rows(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    lite.driver.inject("snapshot", host=w.host)  # type: ignore[attr-defined]
    t = run(lite, lite.snapshots.submit_create("demo", "vm1", "x").id)
    assert t.state == "failed" and "injected" in (t.error or "") and lite.snapshots.list("demo", "vm1") == []
    q = lite.snapshots.submit_create("demo", "vm1", "y")
    assert lite.tasks.cancel_task(q.id).state == "cancelled" and lite.snapshots.list("demo", "vm1") == []
    run(lite, lite.snapshots.submit_create("demo", "vm1", "z").id)
    lite.driver.inject("restore")  # type: ignore[attr-defined]
    r = run(lite, lite.snapshots.submit_restore("demo", "vm1", "z").id)
    assert r.state == "failed" and [s.state for s in lite.snapshots.list("demo", "vm1")] == ["ready"]
    q = lite.snapshots.submit_restore("demo", "vm1", "z")
    lite.tasks.cancel_task(q.id)
    assert [s.state for s in lite.snapshots.list("demo", "vm1")] == ["ready"] and lite.repair.check().ok


def test_a_snapshot_task_whose_process_died_is_resumed(lite: Services) -> None:
    from datetime import UTC, datetime, timedelta

    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    t = lite.snapshots.submit_create("demo", "vm1", "s")
    assert t.id in lite.tasks.claim_tasks(5)
    # the driver took it, then the process died before recording it
    lite.driver.snapshot_create(w.host, _dw(), "s")
    lite.ctx.write(lambda s: setattr(s.get(TaskRow, t.id), "state", "running"))
    later = datetime.now(UTC) + timedelta(hours=1)
    assert any("resumed" in m for m in lite.repair.run(now=later))
    done = run(lite, t.id)
    assert done.state == "succeeded"  # not "already has a snapshot": the resumed create saw it
    assert [s.state for s in lite.snapshots.list("demo", "vm1")] == ["ready"]
    assert lite.repair.check(now=later).ok


def test_a_lost_workloads_snapshot_rows_can_be_deleted(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    run(lite, lite.snapshots.submit_create("demo", "vm1", "s").id)
    lite.sim.fail_host(w.host)
    with pytest.raises(ConflictError, match="cannot snapshot"):
        lite.snapshots.submit_restore("demo", "vm1", "s")
    lite.snapshots.delete("demo", "vm1", "s")
    lite.workloads.delete_workload("demo", "vm1")
    assert lite.repair.check().ok
    with pytest.raises(DriverError):
        lite.driver.snapshot_list(w.host, _dw())  # the host is down


def test_check_reports_a_snapshot_left_without_its_task(lite: Services) -> None:
    small_cluster(lite)
    lite.workloads.create_workload("demo", "vm1", flavor="unit")
    t = lite.snapshots.submit_create("demo", "vm1", "s")
    assert lite.repair.check().ok  # creating, its task queued
    lite.ctx.write(lambda s: setattr(s.get(TaskRow, t.id), "state", "failed"))  # a task ended behind its back
    report = lite.repair.check()
    assert report.violations == ["snapshot s of workload vm1 is creating but no snapshot task runs"]
