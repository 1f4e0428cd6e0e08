"""Tasks: long operations journaled in the tasks table, run by the executor, recovered after a crash."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.drivers.base import DriverError
from poolvisor.services import Services
from poolvisor.services.executor import TaskExecutor
from poolvisor.services.leases import utcnow
from poolvisor.services.tasks import MIGRATE
from poolvisor.store.rows import TaskRow, WorkloadRow


class Crash(BaseException):
    """Stands for the process dying in the middle of a task (nothing catches it)."""


def later(seconds: float = 3600.0):
    return utcnow() + timedelta(seconds=seconds)


def spread(s: Services, n: int = 3) -> None:
    """One unit workload per host, so a consolidation has moves to make."""
    for i in range(n):
        w = s.workloads.create_workload("demo", f"w{i}", flavor="unit")
        if w.host != f"h{i}":
            s.workloads.migrate_workload("demo", f"w{i}", f"h{i}")


def wait_final(s: Services, tid: int, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while (t := s.tasks.get_task(tid)).state in ("queued", "running"):
        assert time.monotonic() < end, t
        time.sleep(0.02)
    return t


def test_a_submitted_migration_runs_on_the_executor(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    with pytest.raises(ConflictError, match="already on"):
        lite.workloads.submit_migrate("demo", "vm1", w.host)  # refused at once, nothing queued
    with pytest.raises(NotFoundError):
        lite.workloads.submit_migrate("demo", "vm1", "nope")
    assert lite.tasks.list_tasks() == []
    t = lite.workloads.submit_migrate("demo", "vm1")
    assert t.state == "queued" and t.kind == "migrate" and t.project == "demo" and t.progress == 0
    ex = TaskExecutor(lite.tasks, workers=1)
    ex.start()
    try:
        done = wait_final(lite, t.id)
    finally:
        ex.stop()
    assert done.state == "succeeded" and done.progress == 1 and done.error is None, done
    now_on = lite.workloads.get_workload("demo", "vm1").host
    assert done.result == {"workload": "demo/vm1", "from": w.host, "to": now_on, "state": "running",
                           "downtime_ms": 0.0}  # the sim migrates at once unless given a bandwidth
    assert [e["message"] for e in done.entries][-1] == "succeeded" and done.finished_at is not None
    assert [x.id for x in lite.tasks.list_tasks("demo", "succeeded")] == [t.id]
    assert lite.tasks.list_tasks(state="running") == []
    lite.catalog.create_project("other")
    with pytest.raises(NotFoundError):
        lite.tasks.get_task(t.id, "other")  # another project's task does not exist for it
    with pytest.raises(InvalidInputError):
        lite.tasks.list_tasks(state="done")
    assert lite.repair.check().ok


def test_the_migration_journal_lives_in_the_task(lite: Services) -> None:
    small_cluster(lite)
    lite.workloads.create_workload("demo", "vm1", flavor="unit")
    seen = {}
    real = lite.driver.start_migration

    def spy(dw, src, dst, live=True):
        seen.update(lite.ctx.read(lambda s: {
            "constraints": dict(s.query(WorkloadRow).one().constraints),
            "journal": dict(s.query(TaskRow).one().journal), "task_state": s.query(TaskRow).one().state}))
        return real(dw, src, dst, live=live)

    lite.driver.start_migration = spy  # type: ignore[method-assign]
    m = lite.workloads.migrate_workload("demo", "vm1")
    assert "migration" not in seen["constraints"] and seen["task_state"] == "running"
    assert seen["journal"]["to"] == m.host and seen["journal"]["state"] == "running"
    [t] = lite.tasks.list_tasks()
    assert t.kind == MIGRATE and t.state == "succeeded"


def test_a_driver_failure_rolls_the_task_back(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")

    def refuse(*_a, **_k):
        raise DriverError("the target refused")

    lite.driver.start_migration = refuse  # type: ignore[method-assign]
    with pytest.raises(DriverError):
        lite.workloads.migrate_workload("demo", "vm1")
    [t] = lite.tasks.list_tasks()
    assert t.state == "rolled_back" and "the target refused" in (t.error or "")
    assert lite.workloads.get_workload("demo", "vm1").host == w.host and lite.repair.check().ok


def test_a_migration_interrupted_before_its_move_is_resumed(lite: Services) -> None:
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    t = lite.workloads.submit_migrate("demo", "vm1")
    lite.ctx.write(lambda s: setattr(s.get(TaskRow, t.id), "state", "running"))  # died right after starting
    assert not lite.repair.check(now=later()).ok
    assert "orphaned" in lite.repair.check(now=later()).violations[0]
    msgs = lite.repair.run(now=later())
    assert msgs == [f"task {t.id} (migrate workload/demo/vm1) resumed"]
    assert lite.tasks.get_task(t.id).state == "queued" and lite.tasks.claim_tasks(5) == [t.id]
    done = lite.tasks.run_task(t.id)
    assert done is not None and done.state == "succeeded"
    assert lite.workloads.get_workload("demo", "vm1").host != w.host and lite.repair.check().ok


@pytest.mark.parametrize("after,state", [(False, "rolled_back"), (True, "succeeded")])
def test_a_migration_interrupted_mid_move_is_closed_by_the_repair(lite: Services, after: bool,
                                                                   state: str) -> None:
    small_cluster(lite)
    lite.workloads.create_workload("demo", "vm1", flavor="unit")
    real = lite.driver.start_migration

    def dying(*a, **k):
        if after:
            real(*a, **k).wait()  # the driver finishes the move, then the process dies
        raise Crash()

    lite.driver.start_migration = dying  # type: ignore[method-assign]
    with pytest.raises(Crash):
        lite.workloads.migrate_workload("demo", "vm1")
    [t] = lite.tasks.list_tasks()
    assert t.state == "running" and lite.repair.check().ok  # its lease is still running
    report = lite.repair.check(now=later())  # one incident, one violation: the workload stuck migrating
    assert not report.ok and len(report.violations) == 1 and "stuck migrating" in report.violations[0]
    del lite.driver.start_migration
    [msg] = lite.repair.run(now=later())
    assert ("confirmed" if after else "undone") in msg
    assert lite.tasks.get_task(t.id).state == state and lite.repair.check(now=later()).ok


def test_a_consolidation_interrupted_mid_way_continues_with_its_remaining_moves(lite: Services) -> None:
    small_cluster(lite, hosts=3)
    spread(lite)
    plan = lite.batch.plan_consolidation("p")
    moves = plan.plan["moves"]
    assert len(moves) == 2, plan
    t = lite.batch.submit_consolidation("p")
    real, calls = lite.driver.start_migration, []

    def second_dies(*a, **k):
        calls.append(a)
        if len(calls) == 2:
            raise Crash()
        return real(*a, **k)

    lite.driver.start_migration = second_dies  # type: ignore[method-assign]
    assert lite.tasks.claim_tasks(5) == [t.id]
    with pytest.raises(Crash):
        lite.tasks.run_task(t.id)
    mid = lite.tasks.get_task(t.id)
    assert mid.state == "running" and 0 < mid.progress < 1 and lite.repair.check().ok
    # child, parent
    assert [c.state for c in lite.tasks.list_tasks(state="running")] == ["running", "running"]
    del lite.driver.start_migration
    msgs = lite.repair.run(now=later())
    assert any("undone" in m for m in msgs) and f"task {t.id} (consolidate pool/p) resumed" in msgs, msgs
    assert lite.tasks.get_task(t.id).state == "queued"
    assert lite.tasks.claim_tasks(5) == [t.id]
    done = lite.tasks.run_task(t.id)
    assert done is not None and done.state == "succeeded", done
    assert done.result is not None and done.result["failed"] == [] and len(done.result["executed"]) == 2
    children = [c for c in lite.tasks.list_tasks() if c.parent == t.id]
    assert sorted(c.state for c in children) == ["rolled_back", "succeeded", "succeeded"]
    assert sum(1 for h in lite.hosts.list_hosts() if h.workloads) == 1 and lite.repair.check().ok


def test_consolidation_apply_in_process_is_a_task(lite: Services) -> None:
    small_cluster(lite, hosts=3)
    spread(lite)
    res = lite.batch.plan_consolidation("p", apply=True)
    assert res.applied and res.failed == [] and len(res.executed) == 2
    [t] = [x for x in lite.tasks.list_tasks() if x.kind == "consolidate"]
    assert t.state == "succeeded" and t.result is not None and t.result["executed"] == res.executed
    with pytest.raises(NotFoundError):
        lite.batch.submit_consolidation("nope")
