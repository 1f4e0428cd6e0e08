"""The `dir` backend with real files: replication, checksums, failures, rebalance, scrub."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolvisor.storage import objects as ob
from poolvisor.storage.dirstore import DirStore, StorageError, WriteFailed

CS = 4096


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DirStore]:
    s = DirStore(tmp_path / "meta", replicas=3, chunk_size=CS, workers=4, batch_chunks=4)
    for i in range(8):
        s.add_device(f"d{i}", tmp_path / f"dev{i}", weight=1.0 + i % 3, domain=f"h{i % 4}")
    yield s
    s.close()


def holders(s: DirStore, volume: str, c: int) -> set[str]:
    return {d.name for d in s.devices.values()
            if not d.failed and ob.object_path(d.path, volume, c).exists()}


def test_roundtrip_three_replicas_on_distinct_domains(store: DirStore) -> None:
    store.create_volume("v", 10 * CS + 100)
    data = os.urandom(10 * CS + 100)
    assert store.write("v", 0, data) == len(data)
    assert store.read("v") == data
    assert store.read("v", CS - 5, 10) == data[CS - 5:CS + 5]
    for c in range(11):
        names = holders(store, "v", c)
        assert len(names) == 3
        assert len({store.devices[n].domain for n in names}) == 3
    store.write("v", 7, b"xyz")  # partial chunk: read-modify-write
    assert store.read("v", 0, 12) == data[:7] + b"xyz" + data[10:12]


def test_thin_unwritten_reads_zero_and_bounds(store: DirStore) -> None:
    store.create_volume("t", 3 * CS)
    assert store.read("t") == bytes(3 * CS)
    assert not any(holders(store, "t", c) for c in range(3))  # nothing allocated
    with pytest.raises(StorageError):
        store.write("t", 3 * CS - 1, b"ab")
    with pytest.raises(StorageError):
        store.read("nope")


def test_corrupt_replica_falls_back_and_scrub_repairs(store: DirStore) -> None:
    store.create_volume("v", 4 * CS)
    data = os.urandom(4 * CS)
    store.write("v", 0, data)
    victim = store.devices[sorted(holders(store, "v", 1))[0]]
    p = ob.object_path(victim.path, "v", 1)
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(raw)
    ob.object_path(store.devices[sorted(holders(store, "v", 2))[0]].path, "v", 2).unlink()
    assert store.read("v") == data
    rep = store.scrub()
    assert rep.copies == 2 and rep.lost == 0
    assert ob.read(victim.path, "v", 1) is not None
    assert all(store.replica_count("v", c) == 3 for c in range(4))


def test_device_killed_by_rename_then_rereplication(store: DirStore, tmp_path: Path) -> None:
    store.create_volume("v", 16 * CS)
    data = os.urandom(16 * CS)
    store.write("v", 0, data)
    os.rename(tmp_path / "dev3", tmp_path / "dev3.dead")
    assert store.read("v") == data  # reads fall back (and mark the device failed)
    store.check_devices()
    assert [d.name for d in store.devices.values() if d.failed] == ["d3"]
    rep = store.rebalance()
    assert rep.lost == 0
    assert all(store.replica_count("v", c) == 3 for c in range(16))
    assert not (tmp_path / "dev3").exists()  # never recreated
    assert store.read("v") == data


def test_kill_during_write_stream_loses_no_acked_byte(tmp_path: Path) -> None:
    s = DirStore(None, replicas=3, chunk_size=CS, workers=4, batch_chunks=2)
    for i in range(6):
        s.add_device(f"d{i}", tmp_path / f"dev{i}", domain=f"h{i}")
    s.create_volume("v", 64 * CS)
    rnd = random.Random(7)
    acked: dict[int, bytes] = {}
    kill = threading.Event()

    def killer() -> None:
        kill.wait()
        os.rename(tmp_path / "dev2", tmp_path / "dev2.gone")

    t = threading.Thread(target=killer)
    t.start()
    for k in range(200):
        if k == 60:
            kill.set()
        c = rnd.randrange(64)
        buf = os.urandom(CS)
        try:
            s.write("v", c * CS, buf)
        except WriteFailed:
            continue
        acked[c] = buf
    t.join()
    assert s.devices["d2"].failed
    s.rebalance()
    for c, buf in acked.items():
        assert s.read("v", c * CS, CS) == buf
        assert s.replica_count("v", c) == 3
    s.close()


def test_join_and_leave_move_only_changed_objects(store: DirStore, tmp_path: Path) -> None:
    store.create_volume("v", 200 * CS)
    data = os.urandom(200 * CS)
    store.write("v", 0, data)
    before = {c: holders(store, "v", c) for c in range(200)}
    store.add_device("new", tmp_path / "devnew", weight=2.0, domain="h1")
    plan = store.rebalance(dry_run=True)
    rep = store.rebalance()
    assert rep.copies == plan.copies == rep.removed and rep.bytes == plan.bytes > 0
    after = {c: holders(store, "v", c) for c in range(200)}
    changed = [c for c in range(200) if after[c] != before[c]]
    assert len(changed) == rep.objects
    assert all(after[c] - before[c] == {"new"} and len(before[c] - after[c]) == 1 for c in changed)
    store.remove_device("d0")
    rep = store.rebalance()
    final = {c: holders(store, "v", c) for c in range(200)}
    assert all("d0" not in final[c] for c in range(200))
    on_d0 = sum("d0" in after[c] for c in range(200))
    assert sum(final[c] != after[c] for c in range(200)) == rep.objects == on_d0
    assert store.read("v") == data


def test_metadata_survives_reopen(store: DirStore, tmp_path: Path) -> None:
    store.create_volume("v", 3 * CS)
    data = os.urandom(3 * CS)
    store.write("v", 0, data)
    store.fail_device("d5")
    with DirStore(tmp_path / "meta") as again:
        assert again.read("v") == data and again.devices["d5"].failed


def test_health_check_marks_removed_device_failed(store: DirStore, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(tmp_path / "dev6")
    assert store.check_devices() == ["d6"]
    assert store.check_devices() == []
    assert "d6" not in {s[0] for s in store._live_spec()}


def test_device_failing_in_prepare_is_replaced_before_ack(store: DirStore, monkeypatch) -> None:
    real = ob.prepare

    def flaky(device: Path, *a, **k):  # type: ignore[no-untyped-def]
        if device == store.devices["d1"].path:
            raise OSError("disk gone")
        return real(device, *a, **k)

    monkeypatch.setattr(ob, "prepare", flaky)
    store.create_volume("v", 40 * CS)
    data = os.urandom(40 * CS)
    store.write("v", 0, data)
    assert store.devices["d1"].failed
    monkeypatch.setattr(ob, "prepare", real)
    assert all(store.replica_count("v", c) == 3 for c in range(40))
    assert not any(p.suffix == ".tmp" for d in store.devices.values() for p in d.path.rglob("*"))
    assert store.read("v") == data


def test_commit_failure_acks_survivors_or_fails(store: DirStore, monkeypatch) -> None:
    store.create_volume("v", 8 * CS)
    data = os.urandom(8 * CS)
    real = ob.commit
    victim = store.devices["d0"]  # holds replicas of some of the 8 chunks (placement is deterministic)

    def broken(device: Path, *a, **k):  # type: ignore[no-untyped-def]
        if device == victim.path:
            raise OSError("disk gone")
        return real(device, *a, **k)

    monkeypatch.setattr(ob, "commit", broken)
    store.write("v", 0, data)  # acknowledged: the surviving replicas committed
    assert victim.failed
    monkeypatch.setattr(ob, "commit", real)
    assert store.read("v") == data
    store.rebalance()
    assert all(store.replica_count("v", c) == 3 for c in range(8))
    monkeypatch.setattr(ob, "commit", lambda *a, **k: (_ for _ in ()).throw(OSError("all gone")))
    with pytest.raises(WriteFailed):
        store.write("v", 0, os.urandom(CS))


def test_thin_provisioning_against_declared_capacity(tmp_path: Path) -> None:
    with DirStore(tmp_path / "meta", replicas=2, chunk_size=CS, oversubscription=2.0) as s:
        for i in range(4):
            s.add_device(f"d{i}", tmp_path / f"dev{i}", domain=f"h{i}", capacity=10 * CS)
        assert s.space() is not None and s.space().capacity == 20 * CS  # type: ignore[union-attr]
        s.create_volume("a", 30 * CS)  # thin: 30 <= 2.0 x 20
        with pytest.raises(StorageError, match="over-subscription"):
            s.create_volume("b", 11 * CS)
        with pytest.raises(StorageError, match="over-subscription"):
            s.extend_volume("a", 41 * CS)
        s.create_volume("c", 10 * CS)
        s.write("a", 0, os.urandom(15 * CS))
        s.write("c", 0, os.urandom(5 * CS))  # 20 chunks written: physically full
        with pytest.raises(WriteFailed, match="pool full"):
            s.write("c", 5 * CS, b"x" * CS)
        s.write("a", 0, os.urandom(CS))  # overwriting takes no new space
        sp = s.space()
        assert sp is not None and (sp.provisioned, sp.used, sp.free) == (40 * CS, 20 * CS, 0)
    with DirStore(tmp_path / "meta") as again:
        assert again.oversubscription == 2.0 and again.devices["d0"].capacity == 10 * CS


def test_tiering_moves_cold_volume_to_slower_class_and_stays_readable(tmp_path: Path) -> None:
    with DirStore(tmp_path / "meta", replicas=2, chunk_size=CS) as s:
        for i in range(3):
            s.add_device(f"s{i}", tmp_path / f"ssd{i}", domain=f"h{i}", klass="ssd")
            s.add_device(f"h{i}", tmp_path / f"hdd{i}", domain=f"h{i}", klass="hdd")
        for name in ("hot", "cold"):
            s.create_volume(name, 6 * CS)
            s.set_volume_class(name, "ssd")
        hot, cold = os.urandom(6 * CS), os.urandom(6 * CS)
        s.write("hot", 0, hot)
        s.write("cold", 0, cold)
        s.volumes["cold"].last_access -= 3600
        assert s.tier(["ssd", "hdd"], cold_after=600) == [("cold", "hdd")]
        for c in range(6):
            assert {n[0] for n in holders(s, "cold", c)} == {"h"}
            assert {n[0] for n in holders(s, "hot", c)} == {"s"}
        assert s.read("cold") == cold and s.read("hot") == hot
        assert s.rebalance(dry_run=True).objects == 0  # settled
        with pytest.raises(StorageError):
            s.set_volume_class("hot", "nvme")
