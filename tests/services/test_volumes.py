"""Storage pools, devices and volumes in the store: placement on distinct failure domains, extents,
thin provisioning and over-subscription, online extension, minimal-movement rebalance on device
join / leave / failure (also as a task), attach reachability, tiering."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.services import Services, volumes
from poolvisor.store.rows import StorageDeviceRow, VolumeRow, VolumeSegmentRow, WorkloadRow


def _pool(s: Services, devices: int = 6, domains: int = 3, cap: int = 100_000, **kw: object) -> None:
    s.volumes.create_pool("sp", segment_mib=1024, **kw)  # type: ignore[arg-type]
    for i in range(devices):
        s.volumes.add_device("sp", f"d{i}", cap, domain=f"rack{i % domains}")


def _placement(s: Services) -> dict[tuple[int, int], set[str]]:
    def tx(ses):  # type: ignore[no-untyped-def]
        q = (select(VolumeSegmentRow.volume_id, VolumeSegmentRow.segment, StorageDeviceRow.name)
             .join(StorageDeviceRow, StorageDeviceRow.id == VolumeSegmentRow.device_id))
        out: dict[tuple[int, int], set[str]] = {}
        for vid, seg, name in ses.execute(q).all():
            out.setdefault((vid, seg), set()).add(name)
        return out
    return s.store.run(tx, write=False)


def _domains(s: Services) -> dict[str, str]:
    return {d.name: d.domain for d in s.volumes.get_pool("sp").devices}


def test_thick_volume_replicas_on_distinct_domains_with_contiguous_extents(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc)
    v = svc.volumes.create_volume("demo", "v1", "sp", 10 * 1024 + 512, thin=False)
    assert (v.segments, v.allocated_mib, v.live_replicas, v.replicas) == (11, 10 * 1024 + 512, 3, 3)
    assert v.extents == 33  # one contiguous extent per replica on empty devices
    dom = _domains(svc)
    for devs in _placement(svc).values():
        assert len({dom[d] for d in devs}) == 3
    sp = svc.volumes.get_pool("sp").space
    assert sp.used_mib == sp.provisioned_mib == 3 * (10 * 1024 + 512)
    assert sum(d.used_mib for d in svc.volumes.get_pool("sp").devices) == sp.used_mib
    assert sp.capacity_mib == 600_000 and sp.usable_capacity_mib == 200_000


def test_thin_oversubscription_and_physical_limits(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc, cap=10 * 1024, oversubscription=2.0)  # 60 GiB raw, 20 GiB usable, 40 GiB provisionable
    with pytest.raises(ConflictError, match="thick volume needs"):
        svc.volumes.create_volume("demo", "big", "sp", 21 * 1024, thin=False)
    svc.volumes.create_volume("demo", "t1", "sp", 20 * 1024)
    svc.volumes.create_volume("demo", "t2", "sp", 20 * 1024)
    with pytest.raises(ConflictError, match="over-subscription limit"):
        svc.volumes.create_volume("demo", "t3", "sp", 1)
    assert svc.volumes.get_pool("sp").space.used_mib == 0  # thin: nothing written yet
    v = svc.volumes.write("demo", "t1", 0, 20 * 1024)
    assert v.allocated_mib == 20 * 1024 and v.segments == 20
    with pytest.raises(ConflictError, match="pool full"):
        svc.volumes.write("demo", "t2", 0, 1)  # physical space gone: the write is refused
    assert svc.volumes.get_volume("demo", "t2").segments == 0
    with pytest.raises(InvalidInputError, match="outside volume"):
        svc.volumes.write("demo", "t1", 20 * 1024, 1)


def test_online_extension_grows_the_last_extent_in_place(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc)
    svc.volumes.create_volume("demo", "v", "sp", 1536, thin=False)  # 1 GiB + 512 MiB segments
    v = svc.volumes.resize_volume("demo", "v", 2048 + 100)
    assert v.size_mib == 2148 and v.segments == 3 and v.allocated_mib == 2148
    assert v.extents == 9  # segment 1 grew in place (one extent per replica), segment 2 is new
    with pytest.raises(ConflictError, match="cannot shrink"):
        svc.volumes.resize_volume("demo", "v", 1000)


def _moved(before: dict[tuple[int, int], set[str]], after: dict[tuple[int, int], set[str]]) -> Counter[str]:
    c: Counter[str] = Counter()
    for k, devs in after.items():
        for d in devs - before.get(k, set()):
            c[d] += 1
    return c


def test_device_join_moves_only_onto_it_near_its_share(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc, devices=8, domains=8)
    for i in range(6):  # 30 % full: no device is ever too full for its straw2 choice
        svc.volumes.create_volume("demo", f"v{i}", "sp", 13 * 1024, thin=False)
    before = _placement(svc)
    svc.volumes.add_device("sp", "d8", 100_000, domain="rack8")
    plan = svc.volumes.plan_rebalance("sp")
    done = svc.volumes.rebalance("sp")
    after = _placement(svc)
    moved = _moved(before, after)
    assert set(moved) == {"d8"}  # replicas move only onto the new device
    assert all(len(after[k] - before[k]) <= 1 for k in after)  # at most one replica per segment
    assert done.copies == plan.copies == moved["d8"] and done.copy_mib == plan.copy_mib
    replicas = 3 * len(after)
    ideal = replicas / 9
    assert 0.6 * ideal <= moved["d8"] <= 1.4 * ideal
    assert svc.volumes.plan_rebalance("sp").segments == 0  # converged
    assert svc.repair.check().ok, svc.repair.check().violations
    used = sum(d.used_mib for d in svc.volumes.get_pool("sp").devices)
    assert used == 3 * 6 * 13 * 1024  # extents freed on the sources, taken on the target


def test_leaving_device_is_drained_then_removed(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc, devices=6, domains=6)
    svc.volumes.create_volume("demo", "v", "sp", 30 * 1024, thin=False)
    before = _placement(svc)
    held = sum("d2" in devs for devs in before.values())
    svc.volumes.set_device_state("sp", "d2", "leaving")
    r = svc.volumes.rebalance("sp")
    after = _placement(svc)
    assert r.segments == held and r.copies == held and r.removed == held and r.lost == 0
    assert all(len(after[k] - before[k]) == ("d2" in before[k]) for k in after)  # only d2's replicas moved
    assert "d2" not in {d.name for d in svc.volumes.get_pool("sp").devices}
    assert svc.repair.check().ok, svc.repair.check().violations


def test_failed_device_is_rereplicated_and_total_loss_fails_the_volume(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc, devices=6, domains=6)
    svc.volumes.create_volume("demo", "v", "sp", 20 * 1024, thin=False)
    svc.volumes.set_device_state("sp", "d0", "failed")
    pool = svc.volumes.get_pool("sp")
    assert pool.under_replicated > 0
    assert svc.volumes.get_volume("demo", "v").live_replicas == 2
    r = svc.volumes.rebalance("sp")
    assert r.lost == 0 and r.removed == 0 and r.copies == r.segments
    assert svc.volumes.get_pool("sp").under_replicated == 0
    v = svc.volumes.get_volume("demo", "v")
    assert v.live_replicas == 3 and v.state == "available" and "d0" not in v.devices
    with pytest.raises(ConflictError, match="failed"):
        svc.volumes.set_device_state("sp", "d0", "up")
    svc.volumes.delete_device("sp", "d0")
    assert svc.repair.check().ok, svc.repair.check().violations
    # every replica of some segment lost: that volume failed
    svc.volumes.create_pool("one", replicas=1)
    svc.volumes.add_device("one", "x", 10_000)
    svc.volumes.add_device("one", "y", 10_000)
    svc.volumes.create_volume("demo", "solo", "one", 4096, thin=False)
    victim = next(iter(svc.volumes.get_volume("demo", "solo").devices))
    svc.volumes.set_device_state("one", victim, "failed")
    r = svc.volumes.rebalance("one")
    assert r.lost > 0
    assert svc.volumes.get_volume("demo", "solo").state == "failed"


def test_too_few_domains_is_a_conflict(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc, devices=4, domains=2)
    with pytest.raises(ConflictError, match="2 failure domain"):
        svc.volumes.create_volume("demo", "v", "sp", 10, thin=False)
    svc.volumes.create_volume("demo", "v2", "sp", 10, thin=False, replicas=2)


def test_rebalance_runs_as_a_task(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(volumes, "BATCH", 8)  # several batches, each its own transaction
    svc.catalog.create_project("demo")
    _pool(svc, devices=6, domains=6)
    svc.volumes.create_volume("demo", "v", "sp", 150 * 1024, thin=False)
    svc.volumes.add_device("sp", "d6", 100_000)
    expected = svc.volumes.plan_rebalance("sp")
    t = svc.volumes.submit_rebalance("sp")
    assert t.kind == "storage-rebalance" and t.state == "queued"
    assert svc.tasks.claim_tasks(5) == [t.id]
    done = svc.tasks.run_task(t.id)
    assert done is not None and done.state == "succeeded", done
    assert done.result is not None and done.result["copies"] == expected.copies
    assert len([e for e in done.entries if "segments moved" in e["message"]]) >= 2
    assert svc.volumes.plan_rebalance("sp").segments == 0
    with pytest.raises(NotFoundError):
        svc.volumes.submit_rebalance("nope")


def test_attach_checks_project_host_and_reach(svc: Services) -> None:
    small_cluster(svc)
    svc.workloads.create_workload("demo", "vm", flavor="unit")
    host = svc.workloads.get_workload("demo", "vm").host
    assert host is not None
    other = next(h for h in ("h0", "h1", "h2") if h != host)
    svc.volumes.create_pool("local", replicas=1, access="local")
    svc.volumes.add_device("local", "ld", 10_000, host=other)
    svc.volumes.create_volume("demo", "lv", "local", 100)
    with pytest.raises(ConflictError, match="cannot reach"):
        svc.volumes.attach("demo", "lv", "vm")
    svc.volumes.add_device("local", "ld2", 10_000, host=host)
    assert svc.volumes.attach("demo", "lv", "vm").attached_to == "vm"
    with pytest.raises(ConflictError, match="already attached"):
        svc.volumes.attach("demo", "lv", "vm")
    with pytest.raises(ConflictError, match="attached"):
        svc.volumes.delete_volume("demo", "lv")
    svc.catalog.create_pool("other")
    svc.volumes.create_pool("net", replicas=1, compute_pool="other")
    svc.volumes.add_device("net", "nd", 10_000)
    svc.volumes.create_volume("demo", "nv", "net", 100)
    with pytest.raises(ConflictError, match="pool 'other' only"):
        svc.volumes.attach("demo", "nv", "vm")
    svc.catalog.create_project("elsewhere")
    svc.volumes.create_volume("elsewhere", "ev", "local", 100)
    with pytest.raises(NotFoundError, match="workload 'vm' not found in project 'elsewhere'"):
        svc.volumes.attach("elsewhere", "ev", "vm")
    assert svc.volumes.detach("demo", "lv").state == "available"
    svc.ctx.write(lambda s: s.execute(update(WorkloadRow).where(WorkloadRow.name == "vm").values(
        state="deleting")))  # a delete has marked it: a disk attached now would miss its copy-back
    with pytest.raises(ConflictError, match="'vm' is being deleted"):
        svc.volumes.attach("demo", "lv", "vm")
    svc.ctx.write(lambda s: s.execute(update(WorkloadRow).where(WorkloadRow.name == "vm").values(
        state="running")))
    svc.volumes.attach("demo", "lv", "vm")
    svc.memory.set_reservation("demo", "vm", 512)
    svc.workloads.delete_workload("demo", "vm")  # its volumes are detached with it, its reservation goes
    v = svc.volumes.get_volume("demo", "lv")
    assert (v.state, v.attached_to) == ("available", None)
    assert svc.repair.check().ok, svc.repair.check().violations
    svc.volumes.delete_volume("demo", "lv")
    with pytest.raises(ConflictError, match="still holds"):
        svc.volumes.delete_pool("net")


def test_tiering_demotes_cold_volumes_and_rebalance_moves_them(svc: Services) -> None:
    svc.catalog.create_project("demo")
    svc.volumes.create_pool("sp", replicas=2)
    for i in range(2):
        svc.volumes.add_device("sp", f"s{i}", 50_000, klass="ssd")
        svc.volumes.add_device("sp", f"h{i}", 50_000, klass="hdd")
    svc.volumes.create_volume("demo", "hot", "sp", 2048, thin=False, klass="ssd")
    svc.volumes.create_volume("demo", "cold", "sp", 2048, thin=False, klass="ssd")
    svc.volumes.write("demo", "hot", 0, 1)  # touched now
    later = datetime.now(UTC) + timedelta(seconds=30)
    svc.store.run(lambda s: [setattr(v, "last_access", datetime.now(UTC) - timedelta(hours=2))
                             for v in s.scalars(select(VolumeRow).filter_by(name="cold"))])
    moved = svc.volumes.tier("sp", ["ssd", "hdd"], cold_after_s=3600, now=later)
    assert moved == [("demo", "cold", "hdd")]
    svc.volumes.rebalance("sp")
    assert set(svc.volumes.get_volume("demo", "cold").devices) == {"h0", "h1"}
    assert set(svc.volumes.get_volume("demo", "hot").devices) == {"s0", "s1"}


def test_check_reports_broken_storage_rows(svc: Services) -> None:
    svc.catalog.create_project("demo")
    _pool(svc, devices=3, domains=3)
    svc.volumes.create_volume("demo", "v", "sp", 2048, thin=False)
    assert svc.repair.check().ok

    def overlap(s):  # type: ignore[no-untyped-def]
        rows = list(s.scalars(select(VolumeSegmentRow).order_by(VolumeSegmentRow.id)))
        a = next(r for r in rows if r.segment == 1)
        b = next(r for r in rows if r.segment == 0 and r.device_id == a.device_id)
        a.extents = [list(b.extents[0])]  # two replicas on one extent
        c = next(r for r in rows if r.segment == 0 and r.device_id != a.device_id)
        c.extents = [[0, 10]]  # short
        s.execute(update(VolumeRow).values(state="bogus"))

    svc.store.run(overlap)
    report = " | ".join(svc.repair.check().violations)
    assert "overlaps" in report and "holds 10 MiB, its segment is 1024 MiB" in report
    assert "unknown state 'bogus'" in report


def test_snapshot_is_a_read_only_copy_of_the_written_segments(svc: Services) -> None:
    small_cluster(svc)
    _pool(svc, cap=20_000, oversubscription=2.0)
    svc.volumes.create_volume("demo", "v", "sp", 8192)  # thin: 8 segments, none written
    svc.volumes.write("demo", "v", 1024, 2048)  # segments 1 and 2
    snap = svc.volumes.snapshot("demo", "v", "v-snap")
    assert (snap.state, snap.snapshot_of, snap.segments, snap.allocated_mib) == ("snapshot", "v", 2, 2048)
    assert svc.volumes.get_pool("sp").space.used_mib == 2 * 2 * 1024 * 3
    for act in (lambda: svc.volumes.write("demo", "v-snap", 0, 1),
                lambda: svc.volumes.resize_volume("demo", "v-snap", 9000)):
        with pytest.raises(ConflictError, match="snapshot"):
            act()
    svc.workloads.create_workload("demo", "vm", flavor="unit")
    with pytest.raises(ConflictError, match="read-only"):
        svc.volumes.attach("demo", "v-snap", "vm")
    with pytest.raises(ConflictError, match="already exists"):
        svc.volumes.snapshot("demo", "v", "v-snap")
    svc.volumes.delete_volume("demo", "v")  # the snapshot outlives its volume
    assert svc.volumes.get_volume("demo", "v-snap").snapshot_of is None
    assert svc.repair.check().ok, svc.repair.check().violations
    # a thick snapshot needs the space of a whole copy
    svc.volumes.create_volume("demo", "big", "sp", 25_000, thin=False)
    with pytest.raises(ConflictError, match="thick volume needs"):
        svc.volumes.snapshot("demo", "big", "big-snap")
