"""Volume data safety on `dir` devices (real directories): no two devices share a directory and the
collector fails closed on a directory it cannot prove is its device's (C1), volume keys are never
reused (C2), snapshots never stay `creating` and are never torn (C3, C4), attachments and deletes
do not race (R8), and the collector neither races writers nor outlives its scope (R9, R10)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from poolvisor.domain.errors import ConflictError
from poolvisor.services import Services
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import StorageDeviceRow, StoragePoolRow, VolumeRow

MiB = 1 << 20


def _vid(s: Services, name: str) -> int:
    return int(s.store.run(lambda x: x.scalars(select(VolumeRow.id).filter_by(name=name)).one(), write=False))


def _one_device_pools(s: Services, root: Path, *pools: str) -> None:
    s.catalog.create_project("demo")
    for p in pools:
        s.volumes.create_pool(p, segment_mib=4, replicas=1, chunk_mib=1)


# ---- C1: device identity ----------------------------------------------------------------------
def test_a_directory_spelled_differently_or_through_a_symlink_is_refused_as_a_second_device(
        svc: Services, tmp_path: Path) -> None:
    _one_device_pools(svc, tmp_path, "a", "b")
    svc.volumes.add_device("b", "d0", 1024, path=str(tmp_path / "d0"))
    (tmp_path / "x").mkdir()
    with pytest.raises(ConflictError, match="already the device 'd0' of storage pool 'b'"):
        svc.volumes.add_device("a", "d0", 1024, path=str(tmp_path / "x" / ".." / "d0"))
    (tmp_path / "link").symlink_to(tmp_path / "d0")
    with pytest.raises(ConflictError, match="already the device"):
        svc.volumes.add_device("a", "d0", 1024, path=str(tmp_path / "link"))
    assert sio.same_dir(tmp_path / "link", tmp_path / "x" / ".." / "d0")  # by (st_dev, st_ino)
    # a directory whose marker names a device that exists (its contents copied elsewhere)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / sio.MARKER).write_bytes((tmp_path / "d0" / sio.MARKER).read_bytes())
    with pytest.raises(ConflictError, match="marked as another device's"):
        svc.volumes.add_device("a", "c", 1024, path=str(tmp_path / "copy"))
    rec = svc.volumes.add_device("a", "e", 1024, path=str(tmp_path / "x" / ".." / "e"))
    assert rec.path == str(tmp_path / "e")  # stored by its real path
    dev_id = svc.store.run(lambda x: x.scalars(select(StorageDeviceRow.id).filter_by(name="e")).one(),
                           write=False)
    assert sio.device_marker(tmp_path / "e") == dev_id and sio.owns(tmp_path / "e", dev_id)


def _legacy_twin(s: Services, root: Path) -> None:
    """Pool b's device d0 and pool a's device at `x/../d0` (rows from before the path checks) with
    the id-less marker those versions wrote."""
    s.volumes.add_device("b", "d0", 1024, path=str(root / "d0"))
    (root / "x").mkdir(exist_ok=True)

    def tx(x):  # type: ignore[no-untyped-def]
        a = x.scalars(select(StoragePoolRow).filter_by(name="a")).one()
        x.add(StorageDeviceRow(pool_id=a.id, name="d0", capacity_mib=1024, klass="ssd", domain="r0",
                               state="up", path=str(root / "x" / ".." / "d0")))
    s.store.run(tx)
    (root / "d0" / sio.MARKER).write_text("poolvisor device\n")


def test_the_collector_keeps_another_pools_data_on_a_shared_legacy_directory(
        svc: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The reviewer's reproduction: before, a scrub of pool a deleted pool b's only replica."""
    _one_device_pools(svc, tmp_path, "a", "b")
    _legacy_twin(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "b", 16)
    data = os.urandom(MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    with caplog.at_level(logging.WARNING, "poolvisor.volume_gc"):
        r = svc.volumes.scrub("a")
        assert (r.garbage_files, r.garbage_bytes) == (0, 0)
        assert svc.volume_gc.collect("b").files == 0  # neither side may collect a shared directory
    assert "is also device(s) d0: not collected" in caplog.text
    assert svc.volumes.read_data("demo", "v", 0, MiB) == data


def test_the_collector_skips_a_device_whose_marker_names_another_and_adopts_an_unshared_legacy_one(
        svc: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _one_device_pools(svc, tmp_path, "a")
    svc.volumes.add_device("a", "d0", 1024, path=str(tmp_path / "d0"))
    ghost = tmp_path / "d0" / "objects" / "v4242"
    ghost.mkdir()
    (ghost / "0000000000").write_bytes(b"g" * 30)
    dev_id = sio.device_marker(tmp_path / "d0")
    assert dev_id is not None
    (tmp_path / "d0" / sio.MARKER).write_text(f"poolvisor device\nid {dev_id + 100}\n")  # another's
    with caplog.at_level(logging.WARNING, "poolvisor.volume_gc"):
        assert svc.volume_gc.collect("a").files == 0
    assert f"names device id {dev_id + 100}: not collected" in caplog.text and ghost.exists()
    (tmp_path / "d0" / sio.MARKER).unlink()  # no marker at all: skipped too
    assert svc.volume_gc.collect("a").files == 0 and ghost.exists()
    (tmp_path / "d0" / sio.MARKER).write_text("poolvisor device\n")  # id-less, nobody else's: adopted
    assert svc.volume_gc.collect("a").files == 1 and not ghost.exists()
    assert sio.device_marker(tmp_path / "d0") == dev_id


# ---- R9/R10: the collector against writers, its scope and its failures --------------------------
def _pools(s: Services, root: Path) -> None:
    s.catalog.create_project("demo")
    for pool in ("src", "dst"):
        s.volumes.create_pool(pool, segment_mib=4, chunk_mib=1)
        for i in range(3):
            s.volumes.add_device(pool, f"{pool}{i}", 1024, domain=f"rack{i}", path=str(root / f"{pool}{i}"))


def test_a_write_whose_volume_directory_the_collector_removed_meanwhile_re_creates_it(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's rmdir lands between a write's mkdir and its open: the write re-creates the
    directory and succeeds; no healthy device is marked failed."""
    from poolvisor.storage import objects as ob

    _pools(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "src", 8)
    real = ob.prepare
    raced: list[Path] = []

    def prepare(device: Path, volume: str, *a, **k):  # type: ignore[no-untyped-def]
        d = device / "objects" / volume
        if device not in raced:
            raced.append(device)
            os.rmdir(d)  # what the collector does to an empty directory of a volume not in the pool
        return real(device, volume, *a, **k)

    monkeypatch.setattr(ob, "prepare", prepare)
    svc.volumes.write_data("demo", "v", 0, b"still here")
    assert len(raced) == 3
    assert all(d.state == "up" for d in svc.volumes.get_pool("src").devices)
    monkeypatch.setattr(ob, "prepare", real)
    assert svc.volumes.read_data("demo", "v", 0, 10) == b"still here"


def test_a_migration_collects_only_its_volume_records_it_and_a_failed_collect_fails_nothing(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poolvisor.domain.errors import NotFoundError
    from poolvisor.services import volume_gc

    _pools(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "src", 16)
    svc.volumes.create_volume("demo", "w", "src", 8)
    data = os.urandom(5 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    svc.volumes.write_data("demo", "w", 0, b"w")
    other = tmp_path / "dst0" / "objects" / sio.volume_key(_vid(svc, "w"))  # another migration's
    other.mkdir()                                                           # pre-copy into dst
    (other / "0000000000").write_bytes(b"p" * 40)
    mine = tmp_path / "src0" / "objects" / sio.volume_key(_vid(svc, "v")) / "0000000012"
    mine.write_bytes(b"s" * 25)  # left on the source (an unplaced segment) by a write redone after the switch
    r = svc.volume_migration.migrate("demo", "v", "dst")
    assert r.to_pool == "dst" and (other / "0000000000").exists() and not mine.exists()
    ev = [e for e in svc.events.list_events() if e.kind == "storage-pool.collected"]
    assert ev and ev[0].subject == "storage-pool/src" and ev[0].data["volumes"] == [_vid(svc, "v")]

    def boom(s, p, now=None, volumes=None, candidates=None):  # type: ignore[no-untyped-def]
        raise NotFoundError("storage pool 'src' not found")  # deleted right after the volume left

    monkeypatch.setattr(volume_gc, "collect_in", boom)
    r = svc.volume_migration.migrate("demo", "v", "src")  # completed: the collect's error is logged
    assert r.to_pool == "src" and svc.volumes.read_data("demo", "v", 0, len(data)) == data

    def delete_it(done: int, total: int) -> None:
        svc.volumes.delete_volume("demo", "w")

    with pytest.raises(NotFoundError, match="volume 'w'"):  # the switch's error, not the collect's
        svc.volume_migration.migrate("demo", "w", "dst", delete_it)


# ---- C2: a new volume never reads a deleted one's leftovers -----------------------------------------
def test_a_new_volume_never_reads_what_a_deleted_volume_left_on_any_device(
        svc: Services, tmp_path: Path) -> None:
    """The reviewer's reproduction: leftovers of a deleted volume (a write racing the delete, a
    pre-copy left by a crash) stay on disk; the next volume, in another project, must read zeros.
    Ids are never reused, and the new volume's directory is cleared on every device whatever its id
    (the leftover is planted under the id the new volume will get: the case of an id deleted
    before the 0017 upgrade)."""
    svc.catalog.create_project("p1")
    svc.catalog.create_project("p2")
    for pool in ("sp", "other"):
        svc.volumes.create_pool(pool, segment_mib=4, replicas=1, chunk_mib=1)
        svc.volumes.add_device(pool, "d0", 1024, domain="r0", path=str(tmp_path / pool))
    svc.volumes.create_volume("p1", "secret", "sp", 16)
    svc.volumes.write_data("p1", "secret", 0, b"p1's secret".ljust(MiB, b"."))
    old = _vid(svc, "secret")
    src = tmp_path / "sp" / "objects" / sio.volume_key(old) / "0000000000"
    blob = src.read_bytes()
    svc.volumes.delete_volume("p1", "secret")
    for pool in ("sp", "other"):  # what the deleted volume left, under its id and the next one
        for vid in (old, old + 1):
            d = tmp_path / pool / "objects" / sio.volume_key(vid)
            d.mkdir(exist_ok=True)
            (d / "0000000000").write_bytes(blob)
    svc.volumes.create_volume("p2", "fresh", "sp", 16)
    new = _vid(svc, "fresh")
    assert new != old
    svc.volumes.write_data("p2", "fresh", 2 * MiB, b"y")  # places segment 0 (thin)
    assert svc.volumes.read_data("p2", "fresh", 0, 16) == bytes(16)
    assert not (tmp_path / "other" / "objects" / sio.volume_key(new)).exists()


# ---- C4: a snapshot is never left `creating` ------------------------------------------------------
def _one_pool(s: Services, root: Path, devices: int = 3) -> None:
    s.catalog.create_project("demo")
    s.volumes.create_pool("sp", segment_mib=4, chunk_mib=1)
    for i in range(devices):
        s.volumes.add_device("sp", f"d{i}", 1024, domain=f"rack{i}", path=str(root / f"d{i}"))


def test_a_snapshot_whose_plan_or_copy_fails_is_dropped_and_the_409_names_the_volume(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewer's reproduction: the source deleted between the snapshot's first transaction
    and its copy plan left the snapshot `creating` forever, and the 409 named volume '?'."""
    from poolvisor.services import volume_copy
    from poolvisor.services.volumes import VolumeService

    _one_pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8)
    svc.volumes.write_data("demo", "v", 0, os.urandom(MiB))
    real = VolumeService._snapshot_copy

    def delete_first(self, s, *a):  # type: ignore[no-untyped-def]
        svc.volumes.delete_volume("demo", "v")  # commits at once (SQLite: the read waits for nothing)
        return real(self, s, *a)

    monkeypatch.setattr(VolumeService, "_snapshot_copy", delete_first)
    with pytest.raises(ConflictError, match="volume 'v' was deleted or migrated while snapshot 'snap'"):
        svc.volumes.snapshot("demo", "v", "snap")
    assert svc.volumes.list_volumes("demo") == []
    monkeypatch.setattr(VolumeService, "_snapshot_copy", real)

    svc.volumes.create_volume("demo", "w", "sp", 8)
    svc.volumes.write_data("demo", "w", 0, os.urandom(MiB))

    def broken(cp):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug, not a 409")

    monkeypatch.setattr(volume_copy, "precopy", broken)
    with pytest.raises(RuntimeError):
        svc.volumes.snapshot("demo", "w", "snap2")
    assert [v.name for v in svc.volumes.list_volumes("demo")] == ["w"]
    assert any(e.kind == "volume.snapshot-dropped" for e in svc.events.list_events())


def test_a_snapshot_left_creating_by_a_dead_copier_is_reported_and_dropped_by_the_repair_sweep(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from poolvisor.services import volume_copy
    from poolvisor.services.volumes import CREATING_STALE_S

    _one_pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8)
    data = os.urandom(2 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    real = volume_copy.precopy
    seen: list[str] = []

    class Died(BaseException):  # the process stops here: nothing of it runs after
        pass

    def copy_then_die(cp):  # type: ignore[no-untyped-def]
        real(cp)
        seen.append(cp.dst_key)
        # while this process copies, neither its own sweep nor a late one drops the snapshot
        later = datetime.now(UTC) + timedelta(seconds=CREATING_STALE_S + 60)
        assert svc.volumes.drop_stale_snapshots(later) == []
        raise Died()

    monkeypatch.setattr(volume_copy, "precopy", copy_then_die)
    with pytest.raises(Died):
        svc.volumes.snapshot("demo", "v", "snap")
    assert svc.volumes.get_volume("demo", "snap").state == "creating"
    assert list(tmp_path.glob(f"*/objects/{seen[0]}/0*"))
    assert svc.repair.check().ok  # a copy may still be running: not before the bound
    assert "creating" not in " ".join(svc.repair.run())
    later = datetime.now(UTC) + timedelta(seconds=CREATING_STALE_S + 60)
    report = svc.repair.check(later)
    assert any("snapshot snap is creating but no copy has touched it" in v for v in report.violations)
    done = svc.repair.run(later)
    assert "snapshot snap: left creating by a copy that stopped; dropped" in done
    assert [v.name for v in svc.volumes.list_volumes("demo")] == ["v"]
    assert not list(tmp_path.glob(f"*/objects/{seen[0]}/0*"))  # its bytes went with it
    monkeypatch.setattr(volume_copy, "precopy", real)
    svc.volumes.snapshot("demo", "v", "snap")  # the name is free again
    assert svc.volumes.read_data("demo", "snap", 0, len(data)) == data


def test_a_long_pre_copy_keeps_its_snapshot_alive(svc: Services, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The heartbeat: a copy that runs past HEARTBEAT_S touches the snapshot, so a sweep judging
    staleness from then (another process's) does not drop it."""
    from datetime import UTC, datetime, timedelta

    from poolvisor.services import volume_copy
    from poolvisor.services.volumes import CREATING_STALE_S

    _one_pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8)
    svc.volumes.write_data("demo", "v", 0, os.urandom(3 * MiB))
    monkeypatch.setattr(volume_copy, "HEARTBEAT_S", -1.0)  # every chunk
    real = volume_copy.precopy
    touched: list[datetime] = []

    def copy_then_look(cp):  # type: ignore[no-untyped-def]
        t0 = datetime.now(UTC)
        done = real(cp)
        svc.volumes._copying.clear()  # as seen from another process: only the heartbeat counts
        beat = svc.store.run(lambda s: s.scalars(select(VolumeRow.last_access).filter_by(name="snap")).one(),
                             write=False)
        beat = beat if beat.tzinfo else beat.replace(tzinfo=UTC)
        assert beat >= t0  # touched during the copy, after the snapshot's row was written
        assert svc.volumes.drop_stale_snapshots(beat + timedelta(seconds=CREATING_STALE_S - 1)) == []
        touched.append(t0)
        return done

    monkeypatch.setattr(volume_copy, "precopy", copy_then_look)
    assert svc.volumes.snapshot("demo", "v", "snap").state == "snapshot" and touched


# ---- C3, R13: a snapshot is the source as of its finish, within its own size -------------------------
def test_a_write_opening_a_new_segment_during_the_pre_copy_is_in_the_snapshot(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewer's reproduction: W1 into a segment the thin source never wrote, then W2 (which
    depends on it, a journal commit) into segment 0, both acknowledged during the pre-copy: the
    snapshot held W2 without W1 (torn)."""
    from poolvisor.services import volume_copy

    _one_pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 16)
    svc.volumes.write_data("demo", "v", 0, b"old0")
    real = volume_copy.precopy

    def racing(cp):  # type: ignore[no-untyped-def]
        done = real(cp)
        svc.volumes.write_data("demo", "v", 8 * MiB, b"W1")
        svc.volumes.write_data("demo", "v", 0, b"W2")
        return done

    monkeypatch.setattr(volume_copy, "precopy", racing)
    snap = svc.volumes.snapshot("demo", "v", "snap")
    assert snap.segments == 2 and snap.allocated_mib == 8
    assert svc.volumes.read_data("demo", "snap", 0, 2) == b"W2"
    assert svc.volumes.read_data("demo", "snap", 8 * MiB, 2) == b"W1"
    assert svc.repair.check().ok, svc.repair.check().violations


def test_a_source_resized_during_the_pre_copy_is_copied_up_to_the_snapshots_size(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poolvisor.services import volume_copy

    _one_pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 6)  # segment 1 holds chunks 4 and 5
    data = os.urandom(6 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    real = volume_copy.precopy

    def resize_and_write(cp):  # type: ignore[no-untyped-def]
        done = real(cp)
        svc.volumes.resize_volume("demo", "v", 8)  # segment 1 now reaches chunk 7
        svc.volumes.write_data("demo", "v", 6 * MiB, b"beyond" * 1000)
        return done

    monkeypatch.setattr(volume_copy, "precopy", resize_and_write)
    snap = svc.volumes.snapshot("demo", "v", "snap")
    assert snap.size_mib == 6
    key = sio.volume_key(_vid(svc, "snap"))
    assert sorted({int(p.name) for p in tmp_path.glob(f"*/objects/{key}/0*")}) == list(range(6))
    assert svc.volumes.read_data("demo", "snap", 0, 6 * MiB) == data


# ---- R8: attachments against deletes and writes -------------------------------------------------------
def _attached(s: Services, root: Path) -> tuple[str, object]:
    from svc_helpers import small_cluster

    from poolvisor.drivers.base import DriverWorkload

    small_cluster(s)
    s.workloads.create_workload("demo", "vm", flavor="unit")
    host = s.workloads.get_workload("demo", "vm").host
    assert host is not None
    s.volumes.create_pool("sp", replicas=1, segment_mib=4)
    s.volumes.add_device("sp", "d1", 64, path=str(root / "d1"))
    s.volumes.create_volume("demo", "data", "sp", 16)
    return host, DriverWorkload("demo/vm", "vm", {})


def test_a_volume_whose_bytes_are_on_a_host_disk_refuses_writes_until_detached(
        svc: Services, tmp_path: Path) -> None:
    """The detach copies the guest's disk back over the volume: a write in between would be
    silently lost, so it is a 409, also through a plan cached (by a write or a read) before the
    attach; the guest's bytes come back and writes work again after the detach."""
    host, dw = _attached(svc, tmp_path)
    svc.volumes.write_data("demo", "data", 0, b"before")  # caches a write plan
    svc.volumes.attach("demo", "data", "vm")
    with pytest.raises(ConflictError, match="is attached: its bytes are on its workload's disk"):
        svc.volumes.write_data("demo", "data", 0, b"lost?!")
    assert svc.volumes.read_data("demo", "data", 0, 6) == b"before"  # reads still served (and cached)
    with pytest.raises(ConflictError, match="is attached"):
        svc.volumes.write_data("demo", "data", 0, b"lost?!")
    sim = svc.drivers.driver_of(host)
    sim.guest_write(host, dw, "demo/data", 0, b"guest!")  # type: ignore[attr-defined]
    svc.volumes.detach("demo", "data")
    assert svc.volumes.read_data("demo", "data", 0, 6) == b"guest!"
    svc.volumes.write_data("demo", "data", 0, b"after!")
    assert svc.volumes.read_data("demo", "data", 0, 6) == b"after!"


def test_an_attach_racing_a_deletes_mark_sees_it(svc: Services, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL, two transactions: the delete marks the workload `deleting` (and finds no
    attachment) after the attach read it `running`; the attach's guarded write then finds the
    state moved, reads again and refuses. (SQLite serializes writers: no such interleaving.)"""
    import threading

    from sqlalchemy import update

    from poolvisor.services.volumes import VolumeService
    from poolvisor.store.rows import WorkloadRow

    if svc.store.dialect == "sqlite":
        pytest.skip("SQLite serializes write transactions")
    _attached(svc, tmp_path)
    real = VolumeService._claim_workload
    marked: list[bool] = []

    def mark_between(s, w):  # type: ignore[no-untyped-def]
        if not marked:
            marked.append(True)

            def mark() -> None:
                svc.store.run(lambda x: x.execute(update(WorkloadRow).where(WorkloadRow.id == w.id)
                                                  .values(state="deleting")))
            th = threading.Thread(target=mark)
            th.start()
            th.join()
        real(s, w)

    monkeypatch.setattr(VolumeService, "_claim_workload", staticmethod(mark_between))
    with pytest.raises(ConflictError, match="is being deleted"):
        svc.volumes.attach("demo", "data", "vm")
    assert marked and svc.volumes.get_volume("demo", "data").attached_to is None


def test_a_detach_and_a_delete_of_its_workload_never_both_copy_the_disk_back(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Either order: a delete that began first makes the detach a 409 (the delete copies the disk
    back), a detach that began first makes the delete a 409 until it is done; the guest's bytes
    come back once, and a detach mark left by a dead process is taken over."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from poolvisor.services import volumes as volumes_mod
    from poolvisor.store.rows import VolumeAttachmentRow

    host, dw = _attached(svc, tmp_path)
    svc.volumes.attach("demo", "data", "vm")
    sim = svc.drivers.driver_of(host)
    sim.guest_write(host, dw, "demo/data", 0, b"first")  # type: ignore[attr-defined]
    real_unplug = volumes_mod.unplug
    refused: list[str] = []

    def unplug_racing_a_delete(drivers, t, write=None):  # type: ignore[no-untyped-def]
        with pytest.raises(ConflictError, match="is being detached; retry") as e:
            svc.workloads.delete_workload("demo", "vm")
        refused.append(str(e.value))
        return real_unplug(drivers, t, write)

    monkeypatch.setattr(volumes_mod, "unplug", unplug_racing_a_delete)
    svc.volumes.detach("demo", "data")
    monkeypatch.setattr(volumes_mod, "unplug", real_unplug)
    assert refused and svc.workloads.get_workload("demo", "vm").state == "running"
    assert svc.volumes.read_data("demo", "data", 0, 5) == b"first"

    svc.volumes.attach("demo", "data", "vm")
    sim.guest_write(host, dw, "demo/data", 0, b"secnd")  # type: ignore[attr-defined]
    release = svc.workloads.lifecycle.release_disks

    def release_racing_a_detach(wid: int, state: str) -> None:
        with pytest.raises(ConflictError, match="is being deleted: its delete detaches"):
            svc.volumes.detach("demo", "data")
        refused.append("detach")
        release(wid, state)

    monkeypatch.setattr(svc.workloads.lifecycle, "release_disks", release_racing_a_detach)
    svc.workloads.delete_workload("demo", "vm")
    assert refused[-1] == "detach" and svc.volumes.read_data("demo", "data", 0, 5) == b"secnd"
    assert svc.volumes.get_volume("demo", "data").attached_to is None

    monkeypatch.setattr(svc.workloads.lifecycle, "release_disks", release)
    svc.workloads.create_workload("demo", "vm2", flavor="unit")
    svc.volumes.attach("demo", "data", "vm2")
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    svc.store.run(lambda s: s.execute(update(VolumeAttachmentRow).values(detaching_since=long_ago)))
    svc.workloads.delete_workload("demo", "vm2")  # a dead detach's mark does not block forever
    assert svc.volumes.get_volume("demo", "data").attached_to is None
