"""Volume bytes through VolumeService on `dir` devices (real directories): writes land as
checksummed objects on exactly the replicas the store placed, reads verify and fall back, a device
killed during a stream of writes loses no acknowledged write, a rebalance moves the bytes with the
placement, snapshots copy them, deleting a volume removes them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.services import Services
from poolvisor.storage import objects as ob
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import StorageDeviceRow, VolumeRow, VolumeSegmentRow

MiB = 1 << 20


def _pool(s: Services, root: Path, devices: int = 6, domains: int = 3) -> None:
    s.catalog.create_project("demo")
    s.volumes.create_pool("sp", segment_mib=4, chunk_mib=1)  # 1 MiB objects: chunk i is MiB i
    for i in range(devices):
        s.volumes.add_device("sp", f"d{i}", 1024, domain=f"rack{i % domains}", path=str(root / f"d{i}"))


def _holders(root: Path, key: str, chunk: int) -> set[str]:
    """Devices whose directory holds a valid replica of the chunk."""
    out = set()
    for d in sorted(root.iterdir()):
        try:
            if ob.read(d, key, chunk) is not None:
                out.add(d.name)
        except (ob.Corrupt, OSError):
            pass
    return out


def _key(s: Services, name: str) -> str:
    vid = s.store.run(lambda ses: ses.scalars(select(VolumeRow.id).filter_by(name=name)).one(), write=False)
    return sio.volume_key(vid)


def _placed(s: Services, name: str, seg: int) -> set[str]:
    """Devices the store placed the segment's live replicas on."""
    def tx(ses):  # type: ignore[no-untyped-def]
        q = (select(StorageDeviceRow.name)
             .join(VolumeSegmentRow, VolumeSegmentRow.device_id == StorageDeviceRow.id)
             .join(VolumeRow, VolumeRow.id == VolumeSegmentRow.volume_id)
             .where(VolumeRow.name == name, VolumeSegmentRow.segment == seg,
                    StorageDeviceRow.state != "failed"))
        return set(ses.scalars(q))
    return s.store.run(tx, write=False)


def test_bytes_land_on_the_placed_replicas_and_read_back_verified(svc: Services, tmp_path: Path) -> None:
    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 16)
    data = os.urandom(3 * MiB)
    assert svc.volumes.write_data("demo", "v", MiB + MiB // 2, data) == len(data)  # 1.5 .. 4.5 MiB: segs 0, 1
    rec = svc.volumes.get_volume("demo", "v")
    assert rec.segments == 2 and rec.live_replicas == 3
    assert svc.volumes.read_data("demo", "v", MiB + MiB // 2, len(data)) == data
    assert svc.volumes.read_data("demo", "v", 0, MiB) == bytes(MiB)  # never written: zeros
    assert svc.volumes.read_data("demo", "v", 12 * MiB, MiB) == bytes(MiB)  # unallocated segment
    key = _key(svc, "v")
    for chunk, seg in ((1, 0), (2, 0), (3, 0), (4, 1)):
        assert _holders(tmp_path, key, chunk) == _placed(svc, "v", seg)  # exactly the placed devices
    assert _holders(tmp_path, key, 0) == set()  # untouched chunk of a written segment: no object

    # a corrupt replica is skipped (checksum), the read comes from another one
    bad = sorted(_placed(svc, "v", 0))[0]
    f = ob.object_path(tmp_path / bad, key, 2)
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    assert svc.volumes.read_data("demo", "v", 2 * MiB, MiB) == data[MiB // 2:MiB // 2 + MiB]
    for d in _placed(svc, "v", 0):  # every replica corrupt: a declared 409, not wrong bytes
        ob.object_path(tmp_path / d, key, 2).write_bytes(b"junk")
    with pytest.raises(ConflictError, match="no valid replica"):
        svc.volumes.read_data("demo", "v", 2 * MiB, 10)
    with pytest.raises(InvalidInputError):
        svc.volumes.write_data("demo", "v", 16 * MiB - 1, b"xy")  # past the end
    with pytest.raises(InvalidInputError):
        svc.volumes.read_data("demo", "v", -1, 1)


def test_a_device_killed_during_a_stream_of_writes_loses_no_acknowledged_write(
        svc: Services, tmp_path: Path) -> None:
    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 32)
    acked: dict[int, bytes] = {}
    for i in range(32):
        data = os.urandom(MiB // 2)
        if i == 10:
            shutil.rmtree(tmp_path / "d0")  # the disk is gone mid-stream
        svc.volumes.write_data("demo", "v", i * MiB, data)  # returns = acknowledged
        acked[i] = data
    devs = {d.name: d.state for d in svc.volumes.get_pool("sp").devices}
    assert devs["d0"] == "failed"  # found by the write that hit it
    for i, data in acked.items():
        assert svc.volumes.read_data("demo", "v", i * MiB, len(data)) == data
    r = svc.volumes.rebalance("sp")  # re-replicates the failed device's segments, with their bytes
    assert r.lost == 0 and r.copies > 0
    assert all(v.live_replicas == 3 for v in svc.volumes.list_volumes("demo"))
    key = _key(svc, "v")
    for i, data in acked.items():
        assert svc.volumes.read_data("demo", "v", i * MiB, len(data)) == data
        assert _holders(tmp_path, key, i) == _placed(svc, "v", i // 4)  # 3 valid copies, where placed
    assert svc.repair.check().ok, svc.repair.check().violations


def test_rebalance_moves_the_bytes_and_drops_the_old_copies(svc: Services, tmp_path: Path) -> None:
    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 64, thin=False)
    blobs = {i: os.urandom(MiB) for i in range(0, 64, 3)}
    for i, b in blobs.items():
        svc.volumes.write_data("demo", "v", i * MiB, b)
    before = {seg: _placed(svc, "v", seg) for seg in range(16)}
    svc.volumes.add_device("sp", "new", 4096, domain="rack9", path=str(tmp_path / "new"))
    svc.volumes.set_device_state("sp", "d1", "leaving")
    r = svc.volumes.rebalance("sp")
    assert r.segments > 0 and r.lost == 0
    moved = [seg for seg in range(16) if _placed(svc, "v", seg) != before[seg]]
    assert moved and all("d1" not in _placed(svc, "v", seg) for seg in range(16))
    key = _key(svc, "v")
    for i, b in blobs.items():
        assert svc.volumes.read_data("demo", "v", i * MiB, MiB) == b
        assert _holders(tmp_path, key, i) == _placed(svc, "v", i // 4)  # old copies dropped
    assert not any((tmp_path / "d1" / "objects" / key).glob("0*"))
    assert "d1" not in {d.name for d in svc.volumes.get_pool("sp").devices}  # drained, removed


def test_snapshot_copies_the_bytes_and_delete_removes_them(svc: Services, tmp_path: Path) -> None:
    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8)
    old = os.urandom(2 * MiB)
    svc.volumes.write_data("demo", "v", 0, old)
    svc.volumes.snapshot("demo", "v", "snap")
    svc.volumes.write_data("demo", "v", 0, os.urandom(2 * MiB))
    assert svc.volumes.read_data("demo", "snap", 0, 2 * MiB) == old
    assert svc.volumes.read_data("demo", "v", 0, 2 * MiB) != old
    with pytest.raises(ConflictError, match="snapshot"):
        svc.volumes.write_data("demo", "snap", 0, b"x")
    keys = [_key(svc, "v"), _key(svc, "snap")]
    svc.volumes.delete_volume("demo", "v")
    svc.volumes.delete_volume("demo", "snap")
    assert not [p for k in keys for p in tmp_path.glob(f"*/objects/{k}")]


def test_device_paths_are_checked(svc: Services, tmp_path: Path) -> None:
    _pool(svc, tmp_path, devices=3)
    with pytest.raises(ConflictError, match="give this one a path"):
        svc.volumes.add_device("sp", "nopath", 1024)
    with pytest.raises(ConflictError, match="already the device"):
        svc.volumes.add_device("sp", "twin", 1024, path=str(tmp_path / "d0"))
    with pytest.raises(InvalidInputError):
        svc.volumes.add_device("sp", "rel", 1024, path="relative/dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConflictError, match="cannot hold a device"):
        svc.volumes.add_device("sp", "f", 1024, path=str(tmp_path / "file"))
    svc.volumes.create_pool("meta")
    svc.volumes.add_device("meta", "m0", 1024)
    with pytest.raises(ConflictError, match="without a path"):
        svc.volumes.add_device("meta", "m1", 1024, path=str(tmp_path / "m1"))
    svc.volumes.add_device("meta", "m1", 1024, domain="b")
    svc.volumes.add_device("meta", "m2", 1024, domain="c")
    svc.volumes.create_volume("demo", "plain", "meta", 4)
    with pytest.raises(ConflictError, match="no directory"):
        svc.volumes.write_data("demo", "plain", 0, b"abc")
    assert svc.volumes.get_pool("sp").devices[0].path == str(tmp_path / "d0")


def test_scrub_repairs_corrupt_missing_and_stale_replicas_and_counts_lost_chunks(
        svc: Services, tmp_path: Path) -> None:
    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8)
    data = os.urandom(2 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    key = _key(svc, "v")
    a, b, c = sorted(_placed(svc, "v", 0))
    f = ob.object_path(tmp_path / a, key, 0)
    raw = bytearray(f.read_bytes())
    raw[100] ^= 1
    f.write_bytes(bytes(raw))  # corrupt
    stale = ob.object_path(tmp_path / c, key, 1).read_bytes()
    svc.volumes.write_data("demo", "v", MiB, data[MiB:])  # same bytes, newer generation
    ob.object_path(tmp_path / c, key, 1).write_bytes(stale)  # an older generation
    ob.object_path(tmp_path / b, key, 1).unlink()  # missing
    r = svc.volumes.scrub("sp")
    assert (r.chunks, r.repaired, r.repaired_bytes, r.lost) == (2, 3, 3 * MiB, 0)
    for chunk in (0, 1):
        reps = [ob.read(tmp_path / d, key, chunk) for d in (a, b, c)]
        assert all(x is not None and x.data == data[chunk * MiB:(chunk + 1) * MiB] for x in reps)
        assert len({x.gen for x in reps if x is not None}) == 1
    assert svc.volumes.scrub("sp").repaired == 0  # nothing left to repair
    for d in (a, b, c):
        ob.object_path(tmp_path / d, key, 0).write_bytes(b"junk")
    assert svc.volumes.scrub("sp").lost == 1



def test_a_write_whose_segment_a_rebalance_moved_meanwhile_is_redone_on_the_new_replicas(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between a write's placement read and its commit point a rebalance moves the segment (it
    copies the bytes as they were); the write's acknowledgement sees the placement generation
    moved and redoes the write, so every replica the segment ends on holds the acknowledged bytes."""
    _pool(svc, tmp_path, devices=3)
    svc.volumes.create_volume("demo", "v", "sp", 64, thin=False)
    old = {b: os.urandom(MiB) for b in range(0, 64, 4)}
    for b, data in old.items():
        svc.volumes.write_data("demo", "v", b * MiB, data)
    real = sio.write
    calls = []

    def write_after_a_rebalance(*a: object, **k: object) -> set[int]:
        if not calls:  # the first attempt: the segment moves before the bytes land
            for i in range(3):
                svc.volumes.add_device("sp", f"n{i}", 1024, domain=f"rack{i}", path=str(tmp_path / f"n{i}"))
            for i in range(3):
                svc.volumes.set_device_state("sp", f"d{i}", "leaving")
            assert svc.volumes.rebalance("sp").segments == 16
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(sio, "write", write_after_a_rebalance)
    new = {b: os.urandom(MiB) for b in old}
    for b, data in new.items():
        svc.volumes.write_data("demo", "v", b * MiB, data)
    assert len(calls) == len(new) + 1  # the first write was redone once
    key = _key(svc, "v")
    for b, data in new.items():
        assert svc.volumes.read_data("demo", "v", b * MiB, MiB) == data
        assert _placed(svc, "v", b // 4) == {"n0", "n1", "n2"}
        for d in ("n0", "n1", "n2"):
            rep = ob.read(tmp_path / d, key, b)
            assert rep is not None and rep.data == data, (b, d)


def test_a_read_on_a_placement_that_moved_meanwhile_reads_again(svc: Services, tmp_path: Path) -> None:
    """A data call reuses the placement the last one read; a rebalance that moved the segments and
    dropped their old copies since then must not make a read return zeros: the read checks the
    pool's generation after reading and reads again on the new placement."""
    _pool(svc, tmp_path, devices=3)
    svc.volumes.create_volume("demo", "v", "sp", 8, thin=False)
    data = os.urandom(8 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    assert svc.volumes.read_data("demo", "v", 0, 8 * MiB) == data  # the placement is now cached
    for i in range(3):
        svc.volumes.add_device("sp", f"n{i}", 1024, domain=f"rack{i}", path=str(tmp_path / f"n{i}"))
        svc.volumes.set_device_state("sp", f"d{i}", "leaving")
    assert svc.volumes.rebalance("sp").segments == 2
    assert not [p for i in range(3) for p in (tmp_path / f"d{i}" / "objects" / _key(svc, "v")).glob("0*")]
    assert svc.volumes.read_data("demo", "v", 0, 8 * MiB) == data
    new = os.urandom(MiB)
    svc.volumes.write_data("demo", "v", 3 * MiB, new)  # a write on the cached plan is redone too
    assert svc.volumes.read_data("demo", "v", 3 * MiB, MiB) == new
    assert _holders(tmp_path, _key(svc, "v"), 3) == {"n0", "n1", "n2"}


def test_a_rebalance_copies_outside_its_transaction_and_keeps_writes_made_meanwhile(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rebalance pre-copies moved segments outside any transaction, so a write made during
    the copy is neither blocked (it would wait for the batch's transaction) nor lost: the batch
    copies again the chunks a source holds newer than the new replica (generation header)."""
    _pool(svc, tmp_path, devices=3)
    svc.volumes.create_volume("demo", "v", "sp", 16, thin=False)
    old = os.urandom(16 * MiB)
    svc.volumes.write_data("demo", "v", 0, old)
    for i in range(3):
        svc.volumes.add_device("sp", f"n{i}", 1024, domain=f"rack{i}", path=str(tmp_path / f"n{i}"))
        svc.volumes.set_device_state("sp", f"d{i}", "leaving")
    real = sio.copy
    during: list[bytes] = []

    def copy_while_writing(*a: object, **k: object) -> int:
        n = real(*a, **k)  # type: ignore[arg-type]
        if not during:  # the first copy: write the volume while the rebalance is copying
            during.append(os.urandom(MiB))
            svc.volumes.write_data("demo", "v", 5 * MiB, during[0])
        return n

    monkeypatch.setattr(sio, "copy", copy_while_writing)
    r = svc.volumes.rebalance("sp")
    assert r.segments == 4 and r.lost == 0 and during
    want = old[:5 * MiB] + during[0] + old[6 * MiB:]
    assert svc.volumes.read_data("demo", "v", 0, 16 * MiB) == want
    key = _key(svc, "v")
    assert _holders(tmp_path, key, 5) == {"n0", "n1", "n2"}
    for d in ("n0", "n1", "n2"):
        rep = ob.read(tmp_path / d, key, 5)
        assert rep is not None and rep.data == during[0]


def test_a_volume_with_many_segments_keeps_only_the_ranges_placement(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past PLAN_SEGMENTS a data call reads only its range's segments; a later call on another
    range reads its own (never trusts a plan that did not read the segments it touches)."""
    from poolvisor.services import volumes as vmod

    monkeypatch.setattr(vmod, "PLAN_SEGMENTS", 2)
    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 16, thin=False)  # 4 segments of 4 MiB
    a, b = os.urandom(MiB), os.urandom(2 * MiB)
    svc.volumes.write_data("demo", "v", 0, a)
    assert svc.volumes._plans[("demo", "v")].covers == range(0, 1)
    svc.volumes.write_data("demo", "v", 11 * MiB, b)  # segments 2 and 3
    assert svc.volumes.read_data("demo", "v", 0, MiB) == a
    assert svc.volumes.read_data("demo", "v", 11 * MiB, 2 * MiB) == b
    assert svc.volumes.read_data("demo", "v", 0, 16 * MiB) == a + bytes(10 * MiB) + b + bytes(3 * MiB)


def test_default_objects_are_4_mib_and_a_short_last_one_grows_with_the_volume(
        svc: Services, tmp_path: Path) -> None:
    """New pools store 4 MiB objects (a divisor of the segment); a volume whose size is not a
    multiple keeps a short last object, which reads and patches as zeros past its end after the
    volume grows; a chunk size that does not divide the segment is refused."""
    svc.catalog.create_project("demo")
    svc.volumes.create_pool("sp", segment_mib=8)
    for i in range(3):
        svc.volumes.add_device("sp", f"d{i}", 1024, domain=f"r{i}", path=str(tmp_path / f"d{i}"))
    assert svc.volumes.get_pool("sp").chunk_mib == 4
    svc.volumes.create_volume("demo", "v", "sp", 6)
    data = os.urandom(6 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    key = _key(svc, "v")
    sizes = sorted(len(ob.read(tmp_path / "d0", key, c).data) for c in (0, 1))  # type: ignore[union-attr]
    assert sizes == [2 * MiB, 4 * MiB]
    svc.volumes.resize_volume("demo", "v", 16)
    assert svc.volumes.read_data("demo", "v", 0, 16 * MiB) == data + bytes(10 * MiB)
    svc.volumes.write_data("demo", "v", 7 * MiB, b"x")  # patches the short object past its end
    want = data[4 * MiB:] + bytes(MiB) + b"x" + bytes(MiB - 1)
    assert svc.volumes.read_data("demo", "v", 4 * MiB, 4 * MiB) == want
    with pytest.raises(InvalidInputError, match="divide"):
        svc.volumes.create_pool("bad", segment_mib=6, chunk_mib=4)
    assert svc.volumes.create_pool("six", segment_mib=6).chunk_mib == 3


def _written_with_a_stray(svc: Services, tmp_path: Path) -> tuple[bytes, str, str, Path]:
    """Volume v written (8 MiB), and a 100-byte object of segment 0 on a device it is not placed
    on: (data, volume key, that device, the stray file)."""
    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8, thin=False)
    data = os.urandom(8 * MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    key = _key(svc, "v")
    outsider = sorted({f"d{i}" for i in range(6)} - _placed(svc, "v", 0))[0]
    stray = ob.object_path(tmp_path / outsider, key, 1)  # chunk 1 is segment 0's
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"x" * 100)
    return data, key, outsider, stray


def test_the_collector_removes_only_unreferenced_object_files(svc: Services, tmp_path: Path) -> None:
    """Real files: an object on a device its segment is not placed on, the directory of a volume
    that does not exist and a prepared file an hour old go; placed objects, a fresh prepared file
    (a write in flight) and other files stay, and the data reads back."""
    data, key, outsider, stray = _written_with_a_stray(svc, tmp_path)
    ghost = tmp_path / "d0" / "objects" / "v999"
    ghost.mkdir()
    (ghost / "0000000000").write_bytes(b"y" * 50)
    placed = sorted(_placed(svc, "v", 1))[0]
    old_tmp = ob.object_path(tmp_path / placed, key, 5).with_suffix(".1.tmp")
    old_tmp.write_bytes(b"z" * 10)
    os.utime(old_tmp, (1, 1))
    fresh_tmp = ob.object_path(tmp_path / placed, key, 6).with_suffix(".2.tmp")
    fresh_tmp.write_bytes(b"w")
    other = tmp_path / "d0" / "objects" / "notes.txt"
    other.write_text("not ours")
    r = svc.volume_gc.collect("sp")
    assert (r.files, r.bytes) == (3, 160)
    assert not stray.exists() and not ghost.exists() and not old_tmp.exists()
    assert fresh_tmp.exists() and other.exists()
    assert svc.volumes.read_data("demo", "v", 0, 8 * MiB) == data
    for c in range(8):
        assert _holders(tmp_path, key, c) == _placed(svc, "v", c // 4)
    assert svc.volume_gc.collect("sp").files == 0


def test_a_whole_pool_collection_scans_unlocked_and_checks_each_candidate_again_under_the_lock(
        svc: Services, tmp_path: Path) -> None:
    """`survey` reads without taking the pool's lock (its generation stays); the locked pass
    removes a candidate only if it is still garbage: an object placed since the scan (here: a
    placed object passed as a candidate) stays, a file created since the scan is not touched."""
    from poolvisor.services.volume_gc import collect_in, survey
    from poolvisor.store.rows import StoragePoolRow

    data, key, outsider, stray = _written_with_a_stray(svc, tmp_path)

    def pool(s):  # type: ignore[no-untyped-def]
        return s.scalars(select(StoragePoolRow).filter_by(name="sp")).one()

    gen = svc.store.run(lambda s: pool(s).generation)
    found = svc.store.run(lambda s: survey(s, pool(s)))
    assert svc.store.run(lambda s: pool(s).generation) == gen  # no lock taken
    dev = {d.name: d.id for d in svc.store.run(lambda s: list(s.scalars(select(StorageDeviceRow))))}
    assert found == [(dev[outsider], key, stray.name)]
    placed = sorted(_placed(svc, "v", 0))[0]
    kept = ob.object_path(tmp_path / placed, key, 0)  # as if its row had committed after the scan
    later = ob.object_path(tmp_path / outsider, key, 2)  # a stray made after the scan
    later.write_bytes(b"y" * 10)
    r = svc.store.run(lambda s: collect_in(s, pool(s), candidates=[*found, (dev[placed], key, kept.name)]))
    assert r == (1, 100) and not stray.exists() and kept.exists() and later.exists()
    assert svc.volumes.read_data("demo", "v", 0, 8 * MiB) == data
    assert svc.volumes.scrub("sp").garbage_files == 1 and not later.exists()


def test_a_snapshot_copies_outside_its_transaction_and_is_the_source_as_of_its_finish(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the bytes are copied no transaction is held (the volume takes writes from the same
    thread) and the snapshot is `creating` (not readable); the finishing transaction copies again
    what was written meanwhile, so the snapshot holds every write acknowledged before it."""
    from poolvisor.services import volume_copy

    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8)
    svc.volumes.write_data("demo", "v", 0, os.urandom(6 * MiB))
    real = volume_copy.precopy
    late = os.urandom(MiB // 2)

    def precopy_then_write(cp: volume_copy.SnapshotCopy) -> volume_copy.Done:
        done = real(cp)
        assert svc.volumes.get_volume("demo", "snap").state == "creating"
        with pytest.raises(ConflictError, match="still being copied"):
            svc.volumes.read_data("demo", "snap", 0, 10)
        svc.volumes.write_data("demo", "v", 5 * MiB, late)  # acknowledged after the pre-copy
        return done

    monkeypatch.setattr(volume_copy, "precopy", precopy_then_write)
    rec = svc.volumes.snapshot("demo", "v", "snap")
    assert rec.state == "snapshot"
    assert svc.volumes.read_data("demo", "snap", 0, 8 * MiB) == svc.volumes.read_data("demo", "v", 0, 8 * MiB)
    assert svc.volumes.read_data("demo", "snap", 5 * MiB, len(late)) == late
    assert svc.repair.check().ok, svc.repair.check().violations


def test_a_snapshot_whose_source_is_deleted_while_copying_is_dropped_with_its_bytes(
        svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poolvisor.services import volume_copy

    _pool(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "sp", 8)
    svc.volumes.write_data("demo", "v", 0, os.urandom(3 * MiB))
    real = volume_copy.precopy
    keys: list[str] = []

    def precopy_then_delete(cp: volume_copy.SnapshotCopy) -> volume_copy.Done:
        done = real(cp)
        keys.append(cp.dst_key)
        assert list(tmp_path.glob(f"*/objects/{cp.dst_key}/0*"))  # copied so far
        svc.volumes.delete_volume("demo", "v")
        return done

    monkeypatch.setattr(volume_copy, "precopy", precopy_then_delete)
    with pytest.raises(ConflictError, match="deleted or migrated"):
        svc.volumes.snapshot("demo", "v", "snap")
    assert [v.name for v in svc.volumes.list_volumes("demo")] == []
    assert not list(tmp_path.glob(f"*/objects/{keys[0]}/0*"))


def test_scrub_also_removes_unreferenced_objects(svc: Services, tmp_path: Path) -> None:
    _pool(svc, tmp_path, devices=3)
    svc.volumes.create_volume("demo", "v", "sp", 4)
    svc.volumes.write_data("demo", "v", 0, os.urandom(MiB))
    ghost = tmp_path / "d1" / "objects" / "v4242"
    ghost.mkdir()
    (ghost / "0000000003").write_bytes(b"q" * 70)
    r = svc.volumes.scrub("sp")
    assert (r.chunks, r.repaired, r.garbage_files, r.garbage_bytes) == (1, 0, 1, 70) and not ghost.exists()
