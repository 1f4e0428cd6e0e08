"""Leases: a live process's use cases are never repaired; a dead (or stalled) one's are, once, soon."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.services import open_services
from poolvisor.services.leases import LEGACY_STALE_S, utcnow
from poolvisor.services.sweeper import RepairSweeper
from poolvisor.store.rows import WorkloadRow


class Crash(BaseException):
    """Stands for the thread running a use case dying (nothing catches it)."""


def dying(driver, op: str) -> None:
    def die(*_a, **_k):
        raise Crash()

    setattr(driver, op, die)


def in_thread(fn):
    """Run fn() in a thread; returns (thread, box) where box gets 'result' or 'error'."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn()
        except Exception as e:  # noqa: BLE001 - reported to the test
            box["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, box


def test_live_leases_are_never_repaired_by_a_concurrent_sweep(db_url):
    """Create, delete and migrate each run 2.5x longer than their 1 s lease in process A while
    process B (another replica on the same database) sweeps non-stop: renewal keeps them alive."""
    prep = open_services(db_url)
    small_cluster(prep)
    prep.workloads.create_workload("demo", "doomed", flavor="unit")
    mover = prep.workloads.create_workload("demo", "mover", flavor="unit")
    prep.close()
    slow = {"create": 2.5, "delete": 2.5, "migrate": 2.5}
    a = open_services(db_url, lease_s=1.0, driver_options={"durations": slow})
    b = open_services(db_url, lease_s=1.0)
    try:
        work = [in_thread(lambda: a.workloads.create_workload("demo", "fresh", flavor="unit")),
                in_thread(lambda: a.workloads.delete_workload("demo", "doomed")),
                in_thread(lambda: a.workloads.migrate_workload("demo", "mover"))]
        repaired, sweeps, seen_transient = [], 0, set()
        while any(t.is_alive() for t, _ in work):
            repaired += b.repair.run()
            sweeps += 1
            seen_transient |= {w.state for w in b.workloads.list_workloads("demo")}
            time.sleep(0.02)
        for t, box in work:
            t.join()
            assert "error" not in box, box["error"]
        assert repaired == [] and sweeps > 20
        assert {"placing", "deleting", "migrating"} <= seen_transient  # the sweeps saw them in flight
        states = {w.name: (w.state, w.host) for w in b.workloads.list_workloads("demo")}
        assert set(states) == {"fresh", "mover"} and states["fresh"][0] == "running"
        assert states["mover"][0] == "running" and states["mover"][1] != mover.host
        assert not [e for e in b.events.list_events("demo") if e.kind == "workload.repaired"]
        report = b.repair.check()
        assert report.ok and report.counts["in_flight"] == 0, report.violations
        with b.store.engine.connect() as c:  # finished use cases leave no lease behind
            rows = c.execute(WorkloadRow.__table__.select()).mappings().all()
            assert all(r["lease_owner"] is None and r["lease_expires"] is None for r in rows)
    finally:
        a.close()
        b.close()


def test_a_stalled_owner_loses_its_lease_and_backs_off(sqlite_url):
    """Process A stops renewing (stalled longer than its lease): B takes the row over and decides;
    A's second transaction finds the lease gone and does not race B's repair."""
    a = open_services(sqlite_url, lease_s=0.3, driver_options={"durations": {"create": 1.0}})
    b = open_services(sqlite_url, lease_s=0.3)
    try:
        small_cluster(a)
        a.leases.renew = lambda: 0  # the stall: no renewal
        t, box = in_thread(lambda: a.workloads.create_workload("demo", "stalled", flavor="unit"))
        time.sleep(0.6)
        done = b.repair.run()
        t.join()
        assert len(done) == 1 and done[0].startswith("workload stalled rolled back"), done
        assert isinstance(box.get("error"), ConflictError) and "lease" in box["error"].message
        assert b.workloads.list_workloads("demo") == []
        assert all(h.workloads == 0 for h in b.hosts.list_hosts())
        assert b.repair.check().ok
    finally:
        a.close()
        b.close()


def test_dead_use_cases_are_repaired_by_the_sweep_within_lease_plus_interval(sqlite_url):
    svc = open_services(sqlite_url, lease_s=0.5)
    try:
        small_cluster(svc)
        svc.workloads.create_workload("demo", "d", flavor="unit")
        dying(svc.driver, "create")
        with pytest.raises(Crash):
            svc.workloads.create_workload("demo", "c", flavor="unit")
        dying(svc.driver, "delete")
        with pytest.raises(Crash):
            svc.workloads.delete_workload("demo", "d")
        t0 = time.monotonic()
        del svc.driver.create, svc.driver.delete
        assert {w.state for w in svc.workloads.list_workloads("demo")} == {"placing", "deleting"}
        sweeper = RepairSweeper(svc.repair, interval=0.2, report=lambda _line: None)
        sweeper.start()
        try:
            while svc.workloads.list_workloads("demo") and time.monotonic() - t0 < 30:
                time.sleep(0.02)
        finally:
            sweeper.stop()
        took = time.monotonic() - t0
        assert svc.workloads.list_workloads("demo") == [], "not repaired"
        assert took < 0.5 + 0.2 + 2.0, took  # lease + interval (+ slack for a loaded machine)
        assert svc.repair.check().ok
    finally:
        svc.close()


def test_two_sweepers_repair_a_row_exactly_once(db_url):
    a = open_services(db_url, lease_s=60)
    small_cluster(a)
    dying(a.driver, "create")
    with pytest.raises(Crash):
        a.workloads.create_workload("demo", "orphan", flavor="unit")
    a.close()
    b, c = open_services(db_url), open_services(db_url)
    try:
        when = utcnow() + timedelta(seconds=120)
        barrier = threading.Barrier(2)

        def sweep(s):
            barrier.wait()
            return s.repair.run(now=when)

        ts = [in_thread(lambda s=s: sweep(s)) for s in (b, c)]
        for t, _ in ts:
            t.join()
        results = [box["result"] for _, box in ts]
        assert sorted(len(r) for r in results) == [0, 1], results
        assert len([e for e in b.events.list_events("demo") if e.kind == "workload.repaired"]) == 1
        assert b.workloads.list_workloads("demo") == [] and b.repair.check().ok
    finally:
        b.close()
        c.close()


def test_rows_without_a_lease_are_judged_by_age(sqlite_url):
    """A transient row left by a version without leases: repaired LEGACY_STALE_S after its update."""
    svc = open_services(sqlite_url)
    try:
        small_cluster(svc)
        dying(svc.driver, "create")
        with pytest.raises(Crash):
            svc.workloads.create_workload("demo", "old", flavor="unit")
        with svc.store.engine.begin() as c:
            c.execute(update(WorkloadRow).values(lease_owner=None, lease_expires=None))
        assert svc.repair.run() == [] and svc.repair.check().ok
        when = utcnow() + timedelta(seconds=LEGACY_STALE_S + 1)
        [violation] = svc.repair.check(now=when).violations
        assert "stuck placing" in violation and "no lease" in violation
        assert len(svc.repair.run(now=when)) == 1 and svc.workloads.list_workloads("demo") == []
    finally:
        svc.close()


@pytest.mark.parametrize("lease", [0, -1, 1e9, float("nan")])
def test_bad_lease_durations_are_refused(sqlite_url, lease):
    with pytest.raises(InvalidInputError):
        open_services(sqlite_url, lease_s=lease)


def test_a_claim_that_queued_longer_than_its_lease_still_owns_it(sqlite_url, monkeypatch):
    """The lease starts when the claiming transaction ends, not when it began (it may queue behind
    other writers): a concurrent sweep must not take over a create whose claim was slow."""
    import poolvisor.services.workloads as workloads

    a = open_services(sqlite_url, lease_s=1.0, driver_options={"durations": {"create": 1.0}})
    b = open_services(sqlite_url, lease_s=1.0)
    try:
        small_cluster(a)
        real_claim = workloads.ledger.claim

        def slow_claim(*args, **kwargs):
            time.sleep(1.5)  # longer than the lease, inside the claiming transaction
            return real_claim(*args, **kwargs)

        monkeypatch.setattr(workloads.ledger, "claim", slow_claim)
        t, box = in_thread(lambda: a.workloads.create_workload("demo", "queued", flavor="unit"))
        repaired = []
        while t.is_alive():
            repaired += b.repair.run()
            time.sleep(0.01)
        t.join()
        assert "error" not in box, box["error"]
        assert repaired == [] and box["result"].state == "running"
    finally:
        a.close()
        b.close()
