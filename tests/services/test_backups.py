"""Backups on the sim driver: targets, create (a task writing a checksummed image), list, delete,
restore through the placement pipeline onto another host after the original host died or was
deleted, corruption detection, and schedules with retention on a simulated clock."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from svc_helpers import small_cluster

from poolvisor.clock import SimClock
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.drivers.protocols import Capability, UnsupportedByDriver
from poolvisor.services import Services
from poolvisor.services.backup_schedules import BackupLoop

T0 = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)


def run(svc: Services, task_id: int):
    assert task_id in svc.tasks.claim_tasks(10)
    t = svc.tasks.run_task(task_id)
    assert t is not None
    return t


def drain(svc: Services) -> list:
    return [svc.tasks.run_task(tid) for tid in svc.tasks.claim_tasks(100)]


@pytest.fixture
def pool(svc: Services, tmp_path: Path) -> Services:
    """SQLite and (marked real) PostgreSQL."""
    small_cluster(svc)
    (tmp_path / "backups").mkdir()
    svc.backups.add_target("t1", str(tmp_path / "backups"))
    return svc


def test_target_rules(lite: Services, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="absolute"):
        lite.backups.add_target("t", "relative/dir")
    (tmp_path / "file").write_text("x")
    for bad in ("file", "missing", "x" * 5000, "bad\x00byte"):  # never created: registering writes nothing
        with pytest.raises(InvalidInputError, match="not an existing writable directory|absolute path"):
            lite.backups.add_target("t", str(tmp_path / bad))
    assert not (tmp_path / "missing").exists()
    (tmp_path / "a" / "b").mkdir(parents=True)
    t = lite.backups.add_target("t", str(tmp_path / "a" / "b" / "."))
    assert t.path == str(tmp_path / "a" / "b") and t.backups == 0
    with pytest.raises(ConflictError, match="already exists"):
        lite.backups.add_target("t", str(tmp_path))
    assert [x.name for x in lite.backups.list_targets()] == ["t"]
    lite.backups.delete_target("t")
    with pytest.raises(NotFoundError):
        lite.backups.delete_target("t")


def test_backup_restore_after_the_host_died(pool: Services, tmp_path: Path) -> None:
    pool.networks.create_network("demo", "lan", "10.9.0.0/24")
    w = pool.workloads.create_workload("demo", "vm1", flavor="unit", group="g", networks=["lan"])
    pool.workloads.workload_action("demo", "vm1", "stop")
    t = pool.backups.submit_create("demo", "vm1", name="nightly")
    assert t.kind == "backup" and t.state == "queued"
    assert pool.backups.get("demo", "vm1", "nightly").state == "creating"
    done = run(pool, t.id)
    assert done.state == "succeeded", done.error
    b = pool.backups.get("demo", "vm1", "nightly")
    f = tmp_path / "backups" / "demo" / "vm1" / "nightly.img"
    data = f.read_bytes()
    assert b.state == "ready" and b.size_bytes == len(data) > 1024 * 64
    assert b.sha256 == hashlib.sha256(data).hexdigest() == done.result["sha256"]
    assert b.workload_state == "stopped" and b.host == w.host
    assert b.spec["demand"] == {"vcpu": 1.0, "memory_mib": 1024.0} and b.spec["group"] == "g"
    assert b.spec["networks"] == ["lan"] and b.spec["flavor"] == "unit"
    assert (f.with_suffix(".json")).is_file()
    assert done.progress == 1.0 and any("verifying" in e["message"] for e in done.entries)

    # the host dies: the workload is lost; restore it under its own name elsewhere
    assert w.host is not None
    pool.sim.fail_host(w.host)
    assert pool.workloads.get_workload("demo", "vm1").state == "lost"
    r = run(pool, pool.backups.submit_restore("demo", "vm1", "nightly").id)
    assert r.state == "succeeded", r.error
    now = pool.workloads.get_workload("demo", "vm1")
    assert now.host not in (None, w.host) and now.state == "stopped"  # the state the image held
    assert r.result["from_host"] == w.host and r.result["host"] == now.host and r.result["rule"]
    assert now.explanation and now.explanation.get("rule")  # placed by the pipeline, explained
    assert pool.driver.stats(now.host).states == {"demo/vm1": "stopped"}
    assert pool.backups.get("demo", "vm1", "nightly").state == "ready"
    assert [n.network for n in pool.networks.list_nics("demo", workload="vm1")] == ["lan"]  # its NIC again
    assert "backup.restored" in [e.kind for e in pool.events.list_events("demo")]
    assert pool.repair.check().ok


def test_restore_after_the_workload_and_its_host_were_deleted(pool: Services) -> None:
    w = pool.workloads.create_workload("demo", "vm1", flavor="unit")
    run(pool, pool.backups.submit_create("demo", "vm1", name="b1").id)
    assert w.host is not None
    pool.workloads.delete_workload("demo", "vm1")
    pool.hosts.delete_host(w.host)
    assert [b.name for b in pool.backups.list("demo", "vm1")] == ["b1"]  # outlives both
    others = sorted({"h0", "h1", "h2"} - {w.host})
    r = run(pool, pool.backups.submit_restore("demo", "vm1", "b1", host=others[1]).id)
    assert r.state == "succeeded", r.error
    assert pool.workloads.get_workload("demo", "vm1").host == others[1]
    assert pool.driver.stats(others[1]).states == {"demo/vm1": "running"}
    # and a second copy under another name, on a host chosen by placement
    r2 = run(pool, pool.backups.submit_restore("demo", "vm1", "b1", as_name="vm1-copy").id)
    assert r2.state == "succeeded" and pool.workloads.get_workload("demo", "vm1-copy").state == "running"
    assert pool.repair.check().ok


def test_restore_refusals_and_corruption(pool: Services, tmp_path: Path) -> None:
    pool.workloads.create_workload("demo", "vm1", flavor="unit")
    run(pool, pool.backups.submit_create("demo", "vm1", name="b1").id)
    with pytest.raises(ConflictError, match="exists"):
        pool.backups.submit_restore("demo", "vm1", "b1")  # it is running: not over it
    with pytest.raises(NotFoundError):
        pool.backups.submit_restore("demo", "vm1", "nope")
    with pytest.raises(NotFoundError):
        pool.backups.submit_restore("demo", "vm1", "b1", as_name="x", host="h9")
    f = tmp_path / "backups" / "demo" / "vm1" / "b1.img"
    good = f.read_bytes()
    raw = bytearray(good)
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    r = run(pool, pool.backups.submit_restore("demo", "vm1", "b1", as_name="vm2").id)
    assert r.state == "failed" and "corrupt" in (r.error or "")
    with pytest.raises(NotFoundError):
        pool.workloads.get_workload("demo", "vm2")
    assert pool.backups.get("demo", "vm1", "b1").state == "ready"
    f.unlink()  # gone from the target: the task says so, the backup is usable again once it is back
    r = run(pool, pool.backups.submit_restore("demo", "vm1", "b1", as_name="vm2").id)
    assert r.state == "failed" and "cannot be read" in (r.error or ""), r.error
    assert pool.backups.get("demo", "vm1", "b1").state == "ready"
    f.write_bytes(good)
    # a pinned host without room: the pipeline refuses with its explanation, nothing is left behind
    for i in range(4):
        pool.workloads.create_workload("demo", f"f{i}", flavor="unit", host="h2")
    r = run(pool, pool.backups.submit_restore("demo", "vm1", "b1", as_name="vm3", host="h2").id)
    assert r.state == "failed", r.result
    assert "no valid host" in (r.error or "").lower() or "no host" in (r.error or "").lower(), r.error
    with pytest.raises(NotFoundError):
        pool.workloads.get_workload("demo", "vm3")
    assert pool.repair.check().ok


def test_import_failure_rolls_the_new_workload_back(pool: Services) -> None:
    pool.workloads.create_workload("demo", "vm1", flavor="unit")
    run(pool, pool.backups.submit_create("demo", "vm1", name="b1").id)
    pool.driver.inject("import")
    r = run(pool, pool.backups.submit_restore("demo", "vm1", "b1", as_name="vm2").id)
    assert r.state == "failed" and "injected failure of import" in (r.error or "")
    with pytest.raises(NotFoundError):
        pool.workloads.get_workload("demo", "vm2")
    assert pool.repair.check().ok


def test_create_refusals_delete_and_capability(pool: Services, tmp_path: Path) -> None:
    w = pool.workloads.create_workload("demo", "vm1", flavor="unit")
    t = pool.backups.submit_create("demo", "vm1", name="a")
    with pytest.raises(ConflictError, match="backup task in progress"):
        pool.backups.submit_create("demo", "vm1", name="b")
    with pytest.raises(ConflictError, match="backup task in progress"):
        pool.snapshots.submit_create("demo", "vm1", "s")  # no snapshot while a backup runs
    with pytest.raises(ConflictError, match="backup task in progress"):
        pool.workloads.submit_migrate("demo", "vm1")  # nor a migration
    run(pool, t.id)
    with pytest.raises(ConflictError, match="already has a backup"):
        pool.backups.submit_create("demo", "vm1", name="a")
    with pytest.raises(NotFoundError):
        pool.backups.submit_create("demo", "vm1", target="nope")
    (tmp_path / "t2").mkdir()
    pool.backups.add_target("t2", str(tmp_path / "t2"))
    with pytest.raises(InvalidInputError, match="several backup targets"):
        pool.backups.submit_create("demo", "vm1")
    with pytest.raises(ConflictError, match="holds 1 backups"):
        pool.backups.delete_target("t1")
    pool.driver.inject("export")
    failed = run(pool, pool.backups.submit_create("demo", "vm1", target="t2", name="x").id)
    assert failed.state == "failed" and [b.name for b in pool.backups.list("demo", "vm1")] == ["a"]
    assert not list((tmp_path / "t2").rglob("*.part"))
    pool.backups.delete("demo", "vm1", "a")
    assert not (tmp_path / "backups" / "demo" / "vm1" / "a.img").exists()
    assert pool.backups.list("demo", "vm1") == []
    with pytest.raises(NotFoundError):
        pool.backups.delete("demo", "vm1", "a")
    # a host whose driver does not export images (like libvirt and LXC today) refuses at once
    assert w.host is not None
    sim = pool.drivers.driver_of(w.host)
    sim.capabilities = frozenset(c for c in sim.capabilities if c != Capability.BACKUP_IMAGE)  # type: ignore[misc]
    with pytest.raises(UnsupportedByDriver, match="cannot export or import backup images"):
        pool.backups.submit_create("demo", "vm1", target="t2")
    assert pool.repair.check().ok


def test_schedule_on_a_simulated_clock_with_retention(pool: Services, tmp_path: Path) -> None:
    pool.workloads.create_workload("demo", "a", flavor="unit", group="web")
    pool.workloads.create_workload("demo", "b", flavor="unit", group="web")
    pool.workloads.create_workload("demo", "c", flavor="unit")
    s = pool.backup_schedules.set_schedule("demo", "group", "web", every_s=6 * 3600, keep=3, now=T0)
    assert (s.scope, s.name, s.target, s.keep) == ("group", "web", "t1", 3)
    with pytest.raises(NotFoundError):
        pool.backup_schedules.set_schedule("demo", "group", "nogroup", every_s=3600, keep=1)
    with pytest.raises(InvalidInputError):
        pool.backup_schedules.set_schedule("demo", "workload", "c", every_s=1, keep=1)
    with pytest.raises(InvalidInputError):
        pool.backup_schedules.set_schedule("demo", "workload", "c", every_s=3600, keep=0)
    leader = [True]
    clock = SimClock(start=T0.timestamp())
    loop = BackupLoop(pool.backup_schedules, interval=600, clock=clock, is_leader=lambda: leader[0])
    loop.start()
    for hour in range(0, 31):  # 31 simulated hours: runs at 0, 6, 12, 18, 24 and 30 h
        clock.run(until=T0.timestamp() + hour * 3600)
        drain(pool)
    assert [(r.schedules, len(r.submitted)) for r in loop.runs] == [(1, 2)] * 6
    for w in ("a", "b"):
        names = [b.name for b in pool.backups.list("demo", w)]
        assert names == ["b20261203-180000", "b20261204-000000", "b20261204-060000"], names
        assert all(b.scheduled and b.state == "ready" for b in pool.backups.list("demo", w))
        files = sorted(p.name for p in (tmp_path / "backups" / "demo" / w).glob("*.img"))
        assert files == [f"{n}.img" for n in names]  # the expired ones' files are gone too
    with pytest.raises(NotFoundError):
        pool.backups.list("demo", "zzz")
    assert pool.backups.list("demo", "c") == []
    assert "backup.expired" in [e.kind for e in pool.events.list_events("demo", limit=1000)]
    # not the leader: nothing runs
    leader[0] = False
    before = len(pool.backups.list("demo", "a"))
    clock.run(until=T0.timestamp() + 48 * 3600)
    drain(pool)
    assert len(pool.backups.list("demo", "a")) == before
    # manual backups are not subject to the schedule's retention
    leader[0] = True
    run(pool, pool.backups.submit_create("demo", "a", name="manual").id)
    clock.run(until=T0.timestamp() + 49 * 3600)
    drain(pool)
    assert "manual" in [b.name for b in pool.backups.list("demo", "a")]
    [sched] = pool.backup_schedules.list_schedules("demo")
    pool.backup_schedules.delete_schedule(sched.id, "demo")
    assert pool.backup_schedules.list_schedules() == []
    loop.stop()
    assert pool.repair.check().ok


def test_scheduled_backup_of_a_busy_or_lost_workload_is_skipped(pool: Services) -> None:
    w = pool.workloads.create_workload("demo", "a", flavor="unit")
    pool.backup_schedules.set_schedule("demo", "workload", "a", every_s=3600, keep=2, now=T0)
    assert w.host is not None
    pool.sim.fail_host(w.host)
    r = pool.backup_schedules.run_due(T0)
    assert r.schedules == 1 and not r.submitted and "lost" in r.skipped[0]
    assert pool.backup_schedules.run_due(T0).schedules == 0  # claimed: not due again before 1 h


def test_check_reports_a_backup_stuck_without_its_task(pool: Services) -> None:
    from poolvisor.store.rows import BackupRow

    pool.workloads.create_workload("demo", "a", flavor="unit")
    run(pool, pool.backups.submit_create("demo", "a", name="b1").id)
    assert pool.repair.check().ok

    def stick(s) -> None:
        s.query(BackupRow).filter_by(name="b1").one().state = "restoring"

    pool.ctx.write(stick)
    report = pool.repair.check()
    want = "backup b1 of workload demo/a is restoring but no backup_restore task runs"
    assert not report.ok and any(want in v for v in report.violations), report.violations
