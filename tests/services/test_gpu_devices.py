"""GPU devices in the services and the store (services/gpus.py, ledger.py, gpu_cache.py): no device
is ever over-allocated, also under concurrent creates from threads on SQLite and PostgreSQL; the
ledger's UPDATE re-checks a device itself; policies without the `gpu-devices` filter still only
pick hosts whose devices hold the request; a failed host frees its devices; the invariant check
reports every kind of device inconsistency; migration 0008 assigns the GPUs workloads already held."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import MetaData, text, update

from poolvisor.domain.errors import ConflictError, InvalidInputError, NoValidHostError
from poolvisor.policies.placement import PlacementPolicy, gpushare
from poolvisor.services import Services, ledger, open_services
from poolvisor.store.engine import Store
from poolvisor.store.migrate import alembic_config
from poolvisor.store.retry import Stale
from poolvisor.store.rows import GpuAllocationRow, HostGpuRow, HostRow

HOSTS, GPUS, ASK = 3, 2, 0.4  # 6 GPUs; 0.4 twice per GPU: 12 workloads fit, not 13


def gpu_pool(svc: Services) -> None:
    svc.catalog.create_pool("g")
    for i in range(HOSTS):
        svc.hosts.create_host(f"h{i}", {"vcpu": 64, "memory_mib": 65536}, pool="g",
                        gpus=[{"count": GPUS, "model": "L4", "memory_mib": 24576}])
    svc.catalog.create_project("p")


def device_milli(svc: Services) -> list[int]:
    return [g.allocated_milli for h in svc.hosts.list_hosts() for g in h.gpus]


@pytest.mark.parametrize("placement", ["fgd-ri", "best-fit"])
def test_concurrent_creates_never_overfill_a_device(db_url: str, placement: str) -> None:
    svc = open_services(db_url, policy=PlacementPolicy.named(placement))
    try:
        gpu_pool(svc)
        fits = HOSTS * GPUS * int(1 / ASK)
        ok: list[str] = []
        refused: list[str] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            for j in range(4):
                name = f"w{k}-{j}"
                try:
                    svc.workloads.create_workload("p", name, demand={"vcpu": 1, "gpu": ASK}, pool="g")
                    with lock:
                        ok.append(name)
                except (NoValidHostError, ConflictError):
                    with lock:
                        refused.append(name)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ok) == fits and len(refused) == 24 - fits  # the pool ends exactly full, never over
        assert device_milli(svc) == [800] * (HOSTS * GPUS)
        shares = [g for w in svc.workloads.list_workloads("p") for g in w.gpus]
        assert len(shares) == fits and all(g.milli == 400 for g in shares)
        report = svc.repair.check()
        assert report.ok, report.violations
    finally:
        svc.close()


def test_ledger_update_rechecks_the_device(lite: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """A device chosen on stale data is refused by the guarded UPDATE itself (Stale, nothing written)."""
    gpu_pool(lite)
    lite.workloads.create_workload("p", "a", demand={"vcpu": 1, "gpu": 0.8}, pool="g")
    host = lite.workloads.get_workload("p", "a").gpus[0]
    monkeypatch.setattr(gpushare, "choose_devices", lambda row, pod, gpu=-1: [host.device])

    def claim(s):  # the ledger as a stale decision would call it: the full device, 0.5 more
        hid = s.query(HostRow.id).filter_by(name=host.host).scalar()
        return ledger.claim_gpus(s, hid, 10**6, 0.5, prefer=[host.device])

    with pytest.raises(Stale):
        lite.store.run_once(claim, write=True)  # one attempt: Stale itself, no retry
    assert sorted(device_milli(lite), reverse=True)[:2] == [800, 0]
    assert lite.repair.check().ok


def test_policies_without_the_device_filter_respect_devices(lite: Services) -> None:
    """best-fit sees 0.8 GPU free on h0 (two GPUs at 0.6), which cannot hold 0.5 on one GPU: the
    request goes to the host whose device can, instead of failing its commit over and over."""
    lite.catalog.create_pool("g")
    lite.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192, "gpu": 2}, pool="g")
    lite.catalog.create_project("p")
    for n in ("a", "b"):
        assert lite.workloads.create_workload("p", n, demand={"vcpu": 1, "gpu": 0.6}, pool="g").host == "h0"
    # looser: best-fit's last
    lite.hosts.create_host("h1", {"vcpu": 64, "memory_mib": 65536, "gpu": 1}, pool="g")
    w = lite.workloads.create_workload("p", "c", demand={"vcpu": 1, "gpu": 0.5}, pool="g")
    assert w.host == "h1" and [(g.device, g.milli) for g in w.gpus] == [(0, 500)]
    with pytest.raises(NoValidHostError):
        lite.workloads.create_workload("p", "d", demand={"vcpu": 1, "gpu": 0.7}, pool="g")
    assert lite.repair.check().ok


def test_failed_host_frees_its_devices(lite: Services) -> None:
    gpu_pool(lite)
    w = lite.workloads.create_workload("p", "a", demand={"vcpu": 1, "gpu": 2}, pool="g")
    assert sorted(g.milli for g in w.gpus) == [1000, 1000]
    lite.sim.fail_host(w.host or "")
    assert lite.workloads.get_workload("p", "a").gpus == [] and sum(device_milli(lite)) == 0
    assert lite.repair.check().ok


@pytest.mark.parametrize(("sql", "fragment"), [
    ("UPDATE host_gpus SET allocated = allocated + 100 WHERE device = 0 AND host_id = "
     "(SELECT host_id FROM gpu_allocations LIMIT 1)", "but its shares sum to"),
    ("UPDATE gpu_allocations SET milli = 300", "holds gpu 0.5 but GPU shares [300]"),
    ("DELETE FROM host_gpus WHERE device = 1", "but has 1 GPU devices"),
    ("UPDATE gpu_allocations SET host_id = (SELECT id FROM hosts WHERE id <> gpu_allocations.host_id "
     "LIMIT 1)", "on another host than its own"),
    ("DELETE FROM gpu_allocations", "holds gpu 0.5 but GPU shares []"),
])
def test_check_reports_device_inconsistencies(lite: Services, sql: str, fragment: str) -> None:
    gpu_pool(lite)
    lite.workloads.create_workload("p", "a", demand={"vcpu": 1, "gpu": 0.5}, pool="g")
    assert lite.repair.check().ok
    with lite.store.engine.begin() as c:
        c.execute(text("PRAGMA foreign_keys=OFF"))
        c.execute(text(sql))
    report = lite.repair.check()
    assert not report.ok and any(fragment in v for v in report.violations), report.violations


def test_device_over_one_gpu_is_reported(lite: Services) -> None:
    gpu_pool(lite)
    lite.workloads.create_workload("p", "a", demand={"vcpu": 1, "gpu": 0.5}, pool="g")
    lite.store.run(lambda s: s.execute(update(HostGpuRow).values(allocated=1500)), write=True)
    lite.store.run(lambda s: s.execute(update(GpuAllocationRow).values(milli=1500)), write=True)
    v = lite.repair.check().violations
    assert any("outside 0..1000" in x for x in v) and any("1500 milli of a GPU" in x for x in v), v


def test_migration_0008_assigns_the_gpus_workloads_hold(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    cfg = alembic_config()
    try:
        with store.engine.execution_options(poolvisor_write=True).begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0005")
        now = datetime.now(UTC)
        with store.engine.execution_options(poolvisor_write=True).begin() as conn:
            md = MetaData()
            md.reflect(conn)
            t = md.tables
            conn.execute(t["projects"].insert(), [{"id": 1, "name": "p", "created_at": now}])
            conn.execute(t["hosts"].insert(), [
                {"id": 1, "name": "h", "pool_id": None, "state": "up", "labels": {}, "domain": "default",
                 "max_workloads": 0, "workloads": 3, "generation": 3, "created_at": now}])
            conn.execute(t["host_resources"].insert(), [
                {"host_id": 1, "resource": "vcpu", "capacity": 16.0, "overcommit": 1.0, "allocated": 3.0},
                {"host_id": 1, "resource": "gpu", "capacity": 3.0, "overcommit": 1.0, "allocated": 1.8}])
            conn.execute(t["workloads"].insert(), [
                {"id": i, "project_id": 1, "name": f"w{i}", "kind": "vm", "state": "running", "host_id": 1,
                 "group_id": None, "flavor": None, "demand": {"vcpu": 1.0, "gpu": g}, "priority": 0,
                 "explanation": None, "constraints": {}, "created_at": now, "updated_at": now}
                for i, g in ((1, 0.5), (2, 1.0), (3, 0.3))])
            conn.execute(t["allocations"].insert(), [
                {"workload_id": i, "host_id": 1, "resource": r, "amount": a}
                for i, g in ((1, 0.5), (2, 1.0), (3, 0.3)) for r, a in (("vcpu", 1.0), ("gpu", g))])
    finally:
        store.close()
    svc = open_services(url)
    try:
        report = svc.repair.check()
        assert report.ok, report.violations
        shares = {w.name: [(g.device, g.milli) for g in w.gpus] for w in svc.workloads.list_workloads("p")}
        assert shares == {"w2": [(0, 1000)], "w1": [(1, 500)], "w3": [(1, 300)]}  # whole first, tightest
        assert [g.allocated_milli for g in svc.hosts.get_host("h").gpus] == [1000, 800, 0]
        w = svc.workloads.create_workload("p", "w4", demand={"vcpu": 1, "gpu": 0.2})
        assert [(g.device, g.milli) for g in w.gpus] == [(1, 200)]
        assert svc.repair.check().ok
    finally:
        svc.close()
    store = Store(url)
    try:
        with store.engine.execution_options(poolvisor_write=True).begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
        with store.engine.connect() as conn:
            md = MetaData()
            md.reflect(conn)
            assert "host_gpus" not in md.tables and "asn" not in md.tables["routers"].c
    finally:
        store.close()


def test_batches_place_whole_gpus_on_fully_free_devices(lite: Services) -> None:
    """A batch plans whole GPUs against fully free devices (h0's 0.9 GPU free is spread over two
    shared GPUs: no whole GPU there), and refuses fractions (they need the one-by-one placement)."""
    lite.catalog.create_pool("g")
    lite.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192, "gpu": 2}, pool="g")
    lite.catalog.create_project("p")
    lite.workloads.create_workload("p", "a", demand={"vcpu": 1, "gpu": 0.3}, pool="g")
    lite.workloads.create_workload("p", "b", demand={"vcpu": 1, "gpu": 0.8}, pool="g")
    assert lite.hosts.get_host("h0").free["gpu"] == pytest.approx(0.9)
    item = [{"name": "whole", "demand": {"vcpu": 1, "gpu": 1}}]
    with pytest.raises(NoValidHostError):
        lite.batch.create_workloads_batch("p", item, pool="g")
    lite.hosts.create_host("h1", {"vcpu": 64, "memory_mib": 65536, "gpu": 1}, pool="g")
    got = lite.batch.create_workloads_batch("p", item, pool="g").workloads
    assert [(w.host, [(g.device, g.milli) for g in lite.workloads.get_workload("p", w.name).gpus])
            for w in got] == [("h1", [(0, 1000)])]
    with pytest.raises(InvalidInputError, match="one-by-one placement"):
        lite.batch.create_workloads_batch("p", [{"name": "part", "demand": {"vcpu": 1, "gpu": 0.5}}],
                                          pool="g")
    assert lite.repair.check().ok


def test_flavors_follow_the_gpu_rule(lite: Services) -> None:
    lite.catalog.create_flavor("half", {"vcpu": 1, "gpu": 0.5})
    with pytest.raises(InvalidInputError, match="fraction of one GPU"):
        lite.catalog.create_flavor("odd", {"vcpu": 1, "gpu": 1.5})
    gpu_pool(lite)
    w = lite.workloads.create_workload("p", "a", flavor="half", pool="g")
    assert [g.milli for g in w.gpus] == [500]
