"""Crash safety: interrupted use cases are repaired once their lease expires; kill -9 loses nothing acked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError
from poolvisor.drivers.base import DriverError
from poolvisor.services import open_services
from poolvisor.services.leases import utcnow


def later(seconds: float = 3600.0):
    """A time when every lease taken now has long expired (repair(now=...) acts as if then)."""
    return utcnow() + timedelta(seconds=seconds)


def crash_after_claim(url: str, name: str, *, driver_created: bool, lease_s: float = 5.0) -> None:
    """Do create's first transaction (and optionally the driver call), then 'crash' (close)."""
    s = open_services(url, lease_s=lease_s)
    try:
        spec = s.workloads._resolve("demo", name, "vm", "unit", None, 0, None, None, {}, {}, None, False)
        wid, host, _spec = s.workloads._place_and_claim(spec)
        if driver_created:
            from poolvisor.services.workloads import _driver_workload

            s.driver.create(host, _driver_workload(spec))
    finally:
        s.close()


def test_placing_rows_are_rolled_back_on_start(db_url):
    s = open_services(db_url)
    small_cluster(s)
    s.close()
    crash_after_claim(db_url, "orphan", driver_created=False, lease_s=60)
    s = open_services(db_url)  # its lease is still running: left alone (it may be in flight)
    assert s.workloads.get_workload("demo", "orphan").state == "placing" and s.repair.check().ok
    assert s.repair.run() == [] and s.repair.check().counts["in_flight"] == 1
    assert not s.repair.check(now=later(61)).ok  # past the lease, `check` reports it stuck
    try:
        assert len(s.repair.run(now=later(61))) == 1
        assert [w.name for w in s.workloads.list_workloads("demo")] == []
        assert all(h.allocated["vcpu"] == 0 and h.workloads == 0 for h in s.hosts.list_hosts())
        assert s.events.list_events("demo")[0].kind == "workload.repaired"
        assert s.repair.check().ok
    finally:
        s.close()


def test_placing_rows_the_driver_knows_are_confirmed(lite):
    small_cluster(lite)
    spec = lite.workloads._resolve("demo", "half", "vm", "unit", None, 0, None, None, {}, {}, None, False)
    _wid, host, _spec = lite.workloads._place_and_claim(spec)
    from poolvisor.services.workloads import _driver_workload

    lite.driver.create(host, _driver_workload(spec))
    done = lite.repair.run(now=later())
    assert done == [f"workload half confirmed running on {host} after an interrupted create"]
    assert lite.workloads.get_workload("demo", "half").state == "running" and lite.repair.check().ok


@pytest.mark.slow
def test_kill_9_during_load_loses_nothing_acknowledged(db_url, tmp_path):
    s = open_services(db_url)
    s.catalog.create_pool("p")
    for i in range(8):
        s.hosts.create_host(f"h{i}", {"vcpu": 64, "memory_mib": 65536}, pool="p")
    s.catalog.create_flavor("unit", {"vcpu": 1, "memory_mib": 1024})
    s.catalog.create_project("demo")
    s.close()
    ack = tmp_path / "acked.txt"
    ack.touch()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    # each sim create takes 20 ms, so the kill most likely lands between create's two commits
    cmd = [sys.executable, "-m", "poolvisor.bench.loadgen", db_url, "demo", "k", "400", "unit", "4",
           str(ack), "0.02"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(ack.read_text().split()) < 25:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "load generator made no progress"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    acked = ack.read_text().split()
    s = open_services(db_url, repair=False)
    interrupted = sum(1 for w in s.workloads.list_workloads("demo") if w.state == "placing")
    s.close()
    s = open_services(db_url, repair=False)
    s.repair.run(now=later())
    try:
        existing = {w.name: w.state for w in s.workloads.list_workloads("demo")}
        assert all(existing.get(n) == "running" for n in acked), [n for n in acked if n not in existing]
        assert "placing" not in existing.values()  # repaired
        report = s.repair.check()
        assert report.ok, report.violations
        assert sum(h.workloads for h in s.hosts.list_hosts()) == len(existing) >= len(acked)
        repaired = [e for e in s.events.list_events("demo", limit=1000) if e.kind == "workload.repaired"]
        assert len(repaired) == interrupted
        print(f"kill -9 interrupted {interrupted} creations; {len(acked)} acknowledged, all present")
    finally:
        s.close()


class Crash(BaseException):
    """Stands for the process dying in the middle of a use case (nothing catches it)."""


def crash_during(driver, op: str, *, after: bool) -> None:
    """Make the driver's `op` die, before or after doing its work."""
    real = getattr(driver, op)

    def dying(*args, **kwargs):
        if after:
            done = real(*args, **kwargs)
            if op == "start_migration":
                done.wait()  # the driver finishes the move, then the process dies
        raise Crash()

    setattr(driver, op, dying)


@pytest.mark.parametrize("after", [False, True])
def test_interrupted_delete_is_finished_on_start(lite, after):
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    crash_during(lite.driver, "delete", after=after)
    with pytest.raises(Crash):
        lite.workloads.delete_workload("demo", "vm1")
    assert lite.workloads.get_workload("demo", "vm1").state == "deleting" and lite.repair.check().ok
    with pytest.raises(ConflictError):
        lite.workloads.workload_action("demo", "vm1", "stop")
    del lite.driver.delete  # the "restarted" process has a working driver again
    assert lite.repair.run(now=later()) == ["workload vm1: interrupted delete finished"]
    assert lite.workloads.list_workloads("demo") == [] and lite.hosts.get_host(w.host).allocated["vcpu"] == 0
    assert lite.repair.check().ok


@pytest.mark.parametrize("after,expected", [(False, "undone"), (True, "confirmed")])
def test_interrupted_migration_is_resolved_on_start(lite, after, expected):
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    crash_during(lite.driver, "start_migration", after=after)
    with pytest.raises(Crash):
        lite.workloads.migrate_workload("demo", "vm1")
    mid = lite.workloads.get_workload("demo", "vm1")
    assert mid.state == "migrating" and mid.host != w.host and lite.repair.check().ok
    del lite.driver.start_migration
    [msg] = lite.repair.run(now=later())
    assert expected in msg
    done = lite.workloads.get_workload("demo", "vm1")
    assert done.state == "running" and (done.host == w.host) == (expected == "undone")
    assert lite.repair.check().ok and lite.events.list_events("demo")[0].kind == "workload.repaired"


def test_interrupted_create_is_rolled_back_on_start(lite):
    small_cluster(lite)
    crash_during(lite.driver, "create", after=False)
    with pytest.raises(Crash):
        lite.workloads.create_workload("demo", "vm1", flavor="unit")
    assert lite.workloads.get_workload("demo", "vm1").state == "placing"
    del lite.driver.create
    lite.repair.run(now=later())
    assert lite.workloads.list_workloads("demo") == [] and lite.repair.check().ok


def test_driver_failure_on_delete_keeps_the_workload(lite):
    small_cluster(lite)
    lite.workloads.create_workload("demo", "vm1", flavor="unit")
    lite.driver.inject("delete")
    with pytest.raises(DriverError):
        lite.workloads.delete_workload("demo", "vm1")
    assert lite.workloads.get_workload("demo", "vm1").state == "running" and lite.repair.check().ok
