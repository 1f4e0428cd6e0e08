"""Host drain and maintenance on the sim driver (services/maintenance.py): one task moves every
workload off (each through the ordinary migration, constraints held), the host ends in
maintenance and takes no new workloads; a drain that cannot finish names the stuck workloads
and why and leaves the host draining; a cancel stops it and restores the host's state, the
workload in flight back on its (draining) source, never lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.services import Services, open_services


def run(s: Services, tid: int) -> None:
    assert tid in s.tasks.claim_tasks(5)
    s.tasks.run_task(tid)


def on(s: Services, host: str) -> set[str]:
    return {w.name for w in s.workloads.list_workloads("demo") if w.host == host}


def fill(s: Services, host: str, names: list[str]) -> None:
    for n in names:
        w = s.workloads.create_workload("demo", n, flavor="unit")
        if w.host != host:
            s.workloads.migrate_workload("demo", n, host)


def test_drain_moves_everything_then_maintenance_then_undrain(lite: Services) -> None:
    small_cluster(lite, hosts=3)
    fill(lite, "h0", ["a", "b", "c"])
    t = lite.maintenance.submit_drain("h0")
    assert t.kind == "drain" and t.state == "queued"
    assert lite.hosts.get_host("h0").state == "draining"  # from the 202 on: nothing new lands there
    run(lite, t.id)
    done = lite.tasks.get_task(t.id)
    assert done.state == "succeeded" and done.progress == 1.0, done
    assert sorted(done.result["moved"]) == ["demo/a", "demo/b", "demo/c"] and done.result["stuck"] == []
    assert lite.hosts.get_host("h0").state == "maintenance" and on(lite, "h0") == set()
    assert lite.driver.stats("h0").states == {}
    assert all(w.state == "running" for w in lite.workloads.list_workloads("demo"))
    # each move was a child migrate task of the drain
    children = [c for c in lite.tasks.list_tasks() if c.parent == t.id]
    assert len(children) == 3 and {c.state for c in children} == {"succeeded"}
    for i in range(5):  # h1 and h2 have room for 5 more units: none goes to h0
        assert lite.workloads.create_workload("demo", f"new{i}", flavor="unit").host != "h0"
    kinds = [e.kind for e in lite.events.list_events()]
    assert "host.draining" in kinds and "host.maintenance" in kinds
    assert lite.maintenance.undrain("h0").state == "up"
    assert lite.workloads.create_workload("demo", "after", flavor="unit").host == "h0"  # the only room
    assert lite.repair.check().ok


def test_stuck_workloads_are_named_with_the_placement_explanation(lite: Services) -> None:
    small_cluster(lite, hosts=3)
    for i in range(3):  # one member of an anti-affinity group on each host
        w = lite.workloads.create_workload("demo", f"g{i}", flavor="unit", group="spread",
                                           group_policy="anti-affinity")
        if w.host != f"h{i}":
            lite.workloads.migrate_workload("demo", f"g{i}", f"h{i}")
    fill(lite, "h0", ["free"])
    t = lite.maintenance.submit_drain("h0")
    run(lite, t.id)
    done = lite.tasks.get_task(t.id)
    assert done.state == "failed"
    assert "host h0 stays draining: 1 workload(s) cannot move: demo/g0: no valid host" in (done.error or "")
    assert done.result["moved"] == ["demo/free"]
    (stuck,) = done.result["stuck"]
    assert stuck["workload"] == "demo/g0" and "anti-affinity" in stuck["reason"]
    assert stuck["explanation"]["hosts_considered"] >= 2  # the placement explanation, as placement gives it
    assert lite.hosts.get_host("h0").state == "draining" and on(lite, "h0") == {"g0"}
    assert lite.workloads.get_workload("demo", "g0").state == "running"
    probe = lite.workloads.create_workload("demo", "probe", flavor="unit", dry_run=True, explain=True)
    assert probe.host != "h0" and "host draining" in str(probe.explanation), probe.explanation
    assert lite.maintenance.undrain("h0").state == "up"
    assert lite.repair.check().ok


def test_submit_and_undrain_refusals(lite: Services) -> None:
    small_cluster(lite, hosts=2)
    with pytest.raises(NotFoundError):
        lite.maintenance.submit_drain("nope")
    with pytest.raises(ConflictError, match="is up, not draining"):
        lite.maintenance.undrain("h0")
    with pytest.raises(InvalidInputError, match="drain the host instead"):
        lite.hosts.set_host_state("h0", "draining")
    t = lite.maintenance.submit_drain("h0")
    with pytest.raises(ConflictError, match=f"already being drained by task {t.id}"):
        lite.maintenance.submit_drain("h0")
    with pytest.raises(ConflictError, match="cancel it first"):
        lite.maintenance.undrain("h0")
    # a queued drain cancelled: the host is back as it was
    assert lite.tasks.cancel_task(t.id).state == "cancelled"
    assert lite.hosts.get_host("h0").state == "up"
    lite.hosts.set_host_state("h1", "down")
    with pytest.raises(ConflictError, match="nothing to drain"):
        lite.maintenance.submit_drain("h1")
    # a host already in maintenance may be drained (it returns to maintenance after a cancel)
    lite.hosts.set_host_state("h0", "maintenance")
    t2 = lite.maintenance.submit_drain("h0")
    lite.tasks.cancel_task(t2.id)
    assert lite.hosts.get_host("h0").state == "maintenance"


@pytest.fixture
def slow(sqlite_url: str) -> Iterator[Services]:
    s = open_services(sqlite_url, driver_options={"migration_bandwidth_mibps": 1024.0})  # 1 s per unit
    yield s
    s.close()


def test_cancel_stops_the_drain_and_the_workload_in_flight_stays_on_its_source(slow: Services) -> None:
    small_cluster(slow, hosts=3)
    fill(slow, "h0", ["a", "b", "c"])
    t = slow.maintenance.submit_drain("h0")
    assert t.id in slow.tasks.claim_tasks(5)
    th = threading.Thread(target=slow.tasks.run_task, args=(t.id,))
    th.start()
    end = time.monotonic() + 10
    while not any(w.state == "migrating" for w in slow.workloads.list_workloads("demo")):
        assert time.monotonic() < end
        time.sleep(0.02)
    assert slow.tasks.cancel_task(t.id).state == "running"
    th.join(20)
    done = slow.tasks.get_task(t.id)
    assert done.state == "cancelled" and "host h0 is up again" in (done.error or ""), done
    assert slow.hosts.get_host("h0").state == "up"
    # the move in flight was aborted: back on the draining source (claimed back, not lost)
    ws = {w.name: (w.state, w.host) for w in slow.workloads.list_workloads("demo")}
    assert all(st == "running" for st, _h in ws.values()), ws
    assert len(on(slow, "h0")) == 3 - len(done.result["moved"]) >= 1
    assert slow.repair.check().ok


def test_a_failed_move_off_a_maintenance_host_goes_back_to_it(slow: Services) -> None:
    """The defect class behind the drain's cancel: a migration undone onto a source that no
    longer takes new workloads (maintenance, draining) used to lose the workload."""
    small_cluster(slow, hosts=2)
    fill(slow, "h0", ["a"])
    slow.hosts.set_host_state("h0", "maintenance")
    t = slow.workloads.submit_migrate("demo", "a")
    assert t.id in slow.tasks.claim_tasks(5)
    th = threading.Thread(target=slow.tasks.run_task, args=(t.id,))
    th.start()
    end = time.monotonic() + 10
    while slow.workloads.get_workload("demo", "a").state != "migrating":
        assert time.monotonic() < end
        time.sleep(0.02)
    slow.tasks.cancel_task(t.id)
    th.join(20)
    w = slow.workloads.get_workload("demo", "a")
    assert (w.state, w.host) == ("running", "h0") and slow.tasks.get_task(t.id).state == "cancelled"
    assert slow.repair.check().ok


def test_a_drain_whose_process_died_is_resumed_by_another(sqlite_url: str) -> None:
    """The drain's owner died mid-task (its lease lapsed): the next process's recovery queues it
    again and it finishes the drain with the workloads still on the host."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from poolvisor.store.rows import TaskRow

    dead = open_services(sqlite_url)
    small_cluster(dead, hosts=3)
    fill(dead, "h0", ["a", "b"])
    t = dead.maintenance.submit_drain("h0")
    assert t.id in dead.tasks.claim_tasks(5)
    dead.workloads.migrate_workload("demo", "a")  # the first move happened, then the process died
    dead.store.run(lambda s: s.execute(update(TaskRow).where(TaskRow.id == t.id).values(
        state="running", lease_expires=datetime.now(UTC) - timedelta(seconds=1))))
    dead.close()
    alive = open_services(sqlite_url)  # its start-up repair resumes the task
    try:
        assert alive.tasks.get_task(t.id).state == "queued"
        run(alive, t.id)
        done = alive.tasks.get_task(t.id)
        assert done.state == "succeeded" and done.result["moved"] == ["demo/b"], done
        assert alive.hosts.get_host("h0").state == "maintenance" and on(alive, "h0") == set()
        assert alive.repair.check().ok
    finally:
        alive.close()


def test_a_stopping_server_lets_the_drain_go_and_it_resumes(lite: Services) -> None:
    from datetime import UTC, datetime, timedelta

    small_cluster(lite, hosts=3)
    fill(lite, "h0", ["a"])
    t = lite.maintenance.submit_drain("h0")
    lite.maintenance.stopping.set()  # the server is shutting down (api/app.py's lifespan)
    run(lite, t.id)
    assert lite.tasks.get_task(t.id).state == "running" and on(lite, "h0") == {"a"}  # left, not failed
    lite.maintenance.stopping.clear()
    assert lite.tasks.recover_tasks(datetime.now(UTC) + timedelta(seconds=60))  # its lease lapsed
    run(lite, t.id)
    assert lite.tasks.get_task(t.id).state == "succeeded" and lite.hosts.get_host("h0").state == "maintenance"


def test_driver_failures_are_retried_then_reported(lite: Services) -> None:
    """A failed live migration goes back to the draining host (not lost) and is tried again after
    the others; one that keeps failing is reported stuck with the driver's reason."""
    small_cluster(lite, hosts=3)
    fill(lite, "h0", ["a", "b"])
    lite.driver.inject("migrate", "h0", times=1)  # the first move fails once: it succeeds on a retry
    t = lite.maintenance.submit_drain("h0")
    run(lite, t.id)
    done = lite.tasks.get_task(t.id)
    assert done.state == "succeeded" and sorted(done.result["moved"]) == ["demo/a", "demo/b"], done
    assert any("(will retry)" in e["message"] for e in done.entries)
    lite.maintenance.undrain("h0")
    fill(lite, "h0", ["c"])
    lite.driver.inject("migrate", "h0", times=3)
    t = lite.maintenance.submit_drain("h0")
    run(lite, t.id)
    done = lite.tasks.get_task(t.id)
    assert done.state == "failed" and [s["workload"] for s in done.result["stuck"]] == ["demo/c"], done
    assert "migration of 'c' failed" in done.result["stuck"][0]["reason"]
    assert lite.workloads.get_workload("demo", "c").state == "running" and on(lite, "h0") == {"c"}
    assert lite.hosts.get_host("h0").state == "draining" and lite.repair.check().ok
