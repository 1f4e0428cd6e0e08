"""Live migration of a volume to another storage pool with real `dir` devices: the bytes move, the
source copies are freed, reads during the migration return the right bytes, and a write during the
pre-copy or racing the switch is never lost (writes wait at the switch and are redone on the
target)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.services import Services
from poolvisor.services import volume_migrate as vm
from poolvisor.storage import objects as ob
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import VolumeRow

MiB = 1 << 20


def _pools(s: Services, root: Path) -> None:
    """A pool of 1 MiB objects (as every pool before revision 0016) and one of the 4 MiB default:
    the migration re-cuts the bytes."""
    s.catalog.create_project("demo")
    for pool, chunk in (("src", 1), ("dst", None)):
        s.volumes.create_pool(pool, segment_mib=4, chunk_mib=chunk)
        for i in range(4):
            s.volumes.add_device(pool, f"{pool}{i}", 1024, domain=f"rack{i}", path=str(root / f"{pool}{i}"))


def _objects(root: Path, prefix: str, key: str) -> list[Path]:
    return [p for d in root.glob(f"{prefix}*") for p in (d / "objects" / key).glob("0*")]


def _key(s: Services) -> str:
    vid = s.store.run(lambda ses: ses.scalars(select(VolumeRow.id).filter_by(name="v")).one(), write=False)
    return sio.volume_key(vid)


def test_migration_moves_the_bytes_and_frees_the_source(svc: Services, tmp_path: Path) -> None:
    _pools(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "src", 24)
    data = os.urandom(13 * MiB + 5)
    svc.volumes.write_data("demo", "v", 3 * MiB, data)
    key = _key(svc)
    assert _objects(tmp_path, "src", key) and not _objects(tmp_path, "dst", key)
    steps: list[tuple[int, int]] = []
    r = svc.volume_migration.migrate("demo", "v", "dst", lambda done, total: steps.append((done, total)))
    assert (r.from_pool, r.to_pool, r.switch_chunks) == ("src", "dst", 0)
    assert r.segments == 5 and steps[-1] == (5, 5) and r.precopy_mib > 0
    v = svc.volumes.get_volume("demo", "v")
    assert v.pool == "dst" and v.live_replicas == 3 and set(v.devices) <= {f"dst{i}" for i in range(4)}
    assert svc.volumes.read_data("demo", "v", 3 * MiB, len(data)) == data
    assert not _objects(tmp_path, "src", key)  # the source copies are freed
    assert len(_objects(tmp_path, "dst", key)) == 5 * 3  # 4 MiB objects: 5 touched, 3 replicas each
    assert svc.volumes.get_pool("src").space.used_mib == 0
    assert svc.repair.check().ok, svc.repair.check().violations
    with pytest.raises(ConflictError, match="already in"):
        svc.volume_migration.migrate("demo", "v", "dst")
    with pytest.raises(NotFoundError):
        svc.volume_migration.migrate("demo", "v", "nowhere")


def test_reads_and_writes_during_the_pre_copy(svc: Services, tmp_path: Path) -> None:
    """While segments are being copied the volume reads back right and takes writes; the writes
    acknowledged meanwhile reach the target (the switch copies them again)."""
    _pools(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "src", 16, thin=False)
    want = bytearray(os.urandom(16 * MiB))
    svc.volumes.write_data("demo", "v", 0, bytes(want))
    seen: list[bool] = []

    def use_the_volume(done: int, total: int) -> None:  # after each segment's pre-copy
        seen.append(svc.volumes.read_data("demo", "v", 0, 16 * MiB) == want)  # readable meanwhile
        at = done * 3 * MiB + MiB // 3
        buf = os.urandom(MiB // 2 + 7)
        svc.volumes.write_data("demo", "v", at, buf)  # acknowledged during the pre-copy
        want[at:at + len(buf)] = buf

    r = svc.volume_migration.migrate("demo", "v", "dst", use_the_volume)
    assert len(seen) == 4 and all(seen) and r.switch_chunks > 0
    assert svc.volumes.read_data("demo", "v", 0, 16 * MiB) == want
    assert svc.volumes.get_volume("demo", "v").pool == "dst"


def test_a_write_racing_the_switch_waits_and_is_redone_on_the_target(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write whose bytes land on the source while the switch holds the pools is not
    acknowledged there: its commit point waits for the switch, sees the generation moved and
    redoes the write on the target, so the acknowledged bytes are the volume's afterwards."""
    _pools(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "src", 8, thin=False)
    svc.volumes.write_data("demo", "v", 0, os.urandom(8 * MiB))
    racing = os.urandom(MiB)
    landed = threading.Event()
    real_write, real_catch_up = sio.write, vm.VolumeMigration._catch_up
    writes: list[str] = []

    def write(key: str, chunks: sio.Chunks, gen: int, during_sync=None) -> set[int]:  # type: ignore[no-untyped-def]
        writes.append(next(iter(chunks.values()))[1][0].device)

        def landed_then_commit_point() -> None:  # the bytes are renamed into place on every replica
            landed.set()
            if during_sync is not None:
                during_sync()

        return real_write(key, chunks, gen, landed_then_commit_point)

    acked: list[int] = []
    writer = threading.Thread(
        target=lambda: acked.append(svc.volumes.write_data("demo", "v", 2 * MiB, racing)))

    def catch_up(plan: vm._Plan, key: str, c: int, targets: list[sio.Replica], done: dict) -> int:  # type: ignore[type-arg]
        if not writer.is_alive() and not acked:  # the first call: the switch holds both pools now
            writer.start()
            assert landed.wait(10)  # the racing write's bytes are on the source, not yet acknowledged
        return real_catch_up(plan, key, c, targets, done)

    monkeypatch.setattr(sio, "write", write)
    monkeypatch.setattr(vm.VolumeMigration, "_catch_up", staticmethod(catch_up))
    svc.volume_migration.migrate("demo", "v", "dst")
    writer.join(30)
    assert acked == [MiB]
    assert writes[0].startswith("src") and writes[-1].startswith("dst")  # redone on the target
    assert svc.volumes.read_data("demo", "v", 2 * MiB, MiB) == racing
    key = _key(svc)
    assert not _objects(tmp_path, "src", key)  # what the first attempt wrote there was collected
    reps = [ob.read(tmp_path / f"dst{i}", key, 0) for i in range(4)]  # MiB 2 is in the first 4 MiB object
    assert sum(r is not None and r.data[2 * MiB:3 * MiB] == racing for r in reps) == 3  # every replica


def test_migration_refusals(svc: Services, tmp_path: Path) -> None:
    _pools(svc, tmp_path)
    svc.volumes.create_pool("meta", segment_mib=4)
    for i in range(3):
        svc.volumes.add_device("meta", f"m{i}", 1024, domain=f"r{i}")
    svc.volumes.create_pool("tiny", segment_mib=4)
    for i in range(3):
        svc.volumes.add_device("tiny", f"t{i}", 8, domain=f"r{i}", path=str(tmp_path / f"t{i}"))
    svc.volumes.create_volume("demo", "v", "src", 64, thin=False)
    with pytest.raises(ConflictError, match="both hold bytes"):
        svc.volume_migration.migrate("demo", "v", "meta")
    with pytest.raises(ConflictError, match="tiny"):
        svc.volume_migration.migrate("demo", "v", "tiny")  # no room
    assert svc.volumes.get_volume("demo", "v").pool == "src"


def test_migration_between_pools_cut_differently(svc: Services, tmp_path: Path) -> None:
    """Segments of 2 MiB in 1 MiB objects to segments of 8 MiB in 4 MiB objects and back: every
    byte reads back (unwritten ranges as zeros, a short last object included), a write made
    during the pre-copy is carried by the switch, and the source objects are freed."""
    svc.catalog.create_project("demo")
    for pool, seg, chunk in (("old", 2, 1), ("new", 8, None)):
        svc.volumes.create_pool(pool, segment_mib=seg, chunk_mib=chunk)
        for i in range(3):
            svc.volumes.add_device(pool, f"{pool}{i}", 1024, domain=f"r{i}",
                                   path=str(tmp_path / f"{pool}{i}"))
    assert svc.volumes.get_pool("new").chunk_mib == 4 and svc.volumes.get_pool("old").chunk_mib == 1
    svc.volumes.create_volume("demo", "v", "old", 22)  # thin; its last 4 MiB object is 2 MiB long
    want = bytearray(22 * MiB)
    for at, n in ((MiB // 2, 3 * MiB), (13 * MiB + 77, MiB), (21 * MiB, MiB)):
        buf = os.urandom(n)
        svc.volumes.write_data("demo", "v", at, buf)
        want[at:at + n] = buf

    def write_meanwhile(done: int, total: int) -> None:
        if done == 1:
            buf = os.urandom(1000)
            svc.volumes.write_data("demo", "v", 2 * MiB + 5, buf)  # in an object already pre-copied
            want[2 * MiB + 5:2 * MiB + 1005] = buf

    key = _key(svc)
    r = svc.volume_migration.migrate("demo", "v", "new", write_meanwhile)
    assert r.switch_chunks == 1 and svc.volumes.get_volume("demo", "v").pool == "new"
    assert svc.volumes.read_data("demo", "v", 0, 22 * MiB) == want
    assert not _objects(tmp_path, "old", key)
    assert svc.repair.check().ok, svc.repair.check().violations
    svc.volume_migration.migrate("demo", "v", "old")
    assert svc.volumes.read_data("demo", "v", 0, 22 * MiB) == want
    assert not _objects(tmp_path, "new", key)


def test_a_volume_deleted_during_the_pre_copy_leaves_no_objects_on_the_target(
        svc: Services, tmp_path: Path) -> None:
    _pools(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "src", 12, thin=False)
    svc.volumes.write_data("demo", "v", 0, os.urandom(12 * MiB))
    key = _key(svc)

    def delete_it(done: int, total: int) -> None:
        if done == 2:
            assert _objects(tmp_path, "dst", key)  # pre-copied so far
            svc.volumes.delete_volume("demo", "v")

    with pytest.raises(NotFoundError):
        svc.volume_migration.migrate("demo", "v", "dst", delete_it)
    assert not _objects(tmp_path, "dst", key) and not _objects(tmp_path, "src", key)
    assert not any((tmp_path / f"dst{i}" / "objects" / key).exists() for i in range(4))


def test_pre_copied_objects_collected_before_the_switch_are_copied_again(
        svc: Services, tmp_path: Path) -> None:
    """The collector may remove a pre-copy (no row points at it yet): the switch sees the copy
    gone and copies it again, so no byte is lost."""
    _pools(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "src", 8, thin=False)
    data = os.urandom(8 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    removed: list[int] = []

    def collect(done: int, total: int) -> None:
        if done == total:
            removed.append(svc.volume_gc.collect("dst").files)

    r = svc.volume_migration.migrate("demo", "v", "dst", collect)
    assert removed == [2 * 3] and r.switch_chunks == 2  # two 4 MiB objects, three replicas each
    assert svc.volumes.read_data("demo", "v", 0, 8 * MiB) == data
