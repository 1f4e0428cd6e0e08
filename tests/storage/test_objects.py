"""Object files: format 2 (payload at 4 KiB, written with O_DIRECT from a staged copy), format 1
still read, the page-cache fallback, and the durability of a volume directory the write path
creates without an fsync of its own."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from poolvisor.storage import objects as ob
from poolvisor.storage import segment_io as sio


def _devices(tmp_path: Path, n: int) -> list[Path]:
    """Devices d0..d(n-1) under tmp_path, each with volume v's directory."""
    devices = [tmp_path / f"d{i}" for i in range(n)]
    for i, d in enumerate(devices):
        sio.init_device(d, i)
        ob.ensure_volume_dir(d, "v")
    return devices


@pytest.fixture
def device(tmp_path: Path) -> Path:
    return _devices(tmp_path, 1)[0]


@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, 3 * 4096 + 17, 1 << 20])
def test_a_staged_payload_of_any_length_reads_back_verified(device: Path, size: int) -> None:
    data = os.urandom(size)
    staged = ob.Staged(data)
    try:
        tmp = ob.prepare(device, "v", 3, 7, staged, lambda: ob.digest(data))
    finally:
        staged.release()
    ob.commit(device, "v", 3, tmp)
    raw = ob.object_path(device, "v", 3).read_bytes()
    assert len(raw) == ob.ALIGN + size  # the zeros padding the last page are cut off
    assert raw[ob.ALIGN:] == data
    rep = ob.read(device, "v", 3)
    assert rep is not None and rep.data == data and rep.gen == 7
    assert ob.read_gen(device, "v", 3) == 7


def test_staging_buffers_are_reused_without_leaking_old_bytes(device: Path) -> None:
    first, second = os.urandom(3 * 4096), os.urandom(2 * 4096 + 5)
    for c, data in enumerate([first, second, first[:100]]):
        staged = ob.Staged(data)
        assert bytes(staged.payload) == data
        assert not any(staged.padded[len(data):])  # the padding is zeros, whatever the buffer held
        ob.commit(device, "v", c, ob.prepare(device, "v", c, 1, staged, ob.digest(data)))
        staged.release()
    assert [ob.read(device, "v", c).data for c in range(3)] == [first, second, first[:100]]  # type: ignore[union-attr]


def test_a_flipped_byte_anywhere_is_corrupt_including_the_header_padding(device: Path) -> None:
    data = os.urandom(10_000)
    ob.commit(device, "v", 0, ob.prepare(device, "v", 0, 1, data, ob.digest(data)))
    p = ob.object_path(device, "v", 0)
    good = p.read_bytes()
    for at in (0, 20, 100, ob.ALIGN - 1, ob.ALIGN, len(good) - 1):
        bad = bytearray(good)
        bad[at] ^= 1
        p.write_bytes(bytes(bad))
        with pytest.raises(ob.Corrupt):
            ob.read(device, "v", 0)
    p.write_bytes(good[:-1])  # short
    with pytest.raises(ob.Corrupt):
        ob.read(device, "v", 0)


def test_format_1_objects_are_still_read(device: Path) -> None:
    data = os.urandom(5000)
    header = ob.HEADER.pack(ob.MAGIC, 1, 42, len(data), ob.digest(data)).ljust(ob.HEADER_SIZE, b"\0")
    ob.object_path(device, "v", 9).write_bytes(header + data)
    rep = ob.read(device, "v", 9)
    assert rep is not None and rep.data == data and rep.gen == 42
    assert ob.read_gen(device, "v", 9) == 42


def test_a_directory_refusing_o_direct_is_written_through_the_page_cache(
        device: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not ob._O_DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    real_open = os.open
    flags_seen: list[int] = []

    def picky_open(path: object, flags: int, *a: object, **k: object) -> int:
        flags_seen.append(flags)
        if flags & ob._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", picky_open)
    monkeypatch.setattr(ob, "_no_direct", set())
    monkeypatch.setattr(ob, "DIRECT_WRITES", True)  # (POOLVISOR_DIRECT_IO=1)
    data = os.urandom(3 * 4096 + 1)
    for c in range(2):
        staged = ob.Staged(data)
        ob.commit(device, "v", c, ob.prepare(device, "v", c, 1, staged, ob.digest(data)))
        staged.release()
    assert device in ob._no_direct
    assert sum(bool(f & ob._O_DIRECT) for f in flags_seen) == 1  # asked once, then remembered
    monkeypatch.setattr(os, "open", real_open)
    assert ob.read(device, "v", 0).data == ob.read(device, "v", 1).data == data  # type: ignore[union-attr]


def test_a_device_error_other_than_einval_is_not_taken_for_a_refusal(
        device: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ob, "DIRECT_WRITES", True)
    os.rename(device, device.with_suffix(".dead"))
    staged = ob.Staged(b"x" * 4096)
    try:
        with pytest.raises(FileNotFoundError):
            ob.prepare(device, "v", 0, 1, staged, ob.digest(b"x" * 4096))
    finally:
        staged.release()
    assert device not in ob._no_direct


def _syncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    seen: list[Path] = []
    real = ob.fsync_dir

    def spy(path: Path) -> None:
        seen.append(path)
        real(path)

    monkeypatch.setattr(ob, "fsync_dir", spy)
    return seen


def test_the_write_path_makes_a_new_volume_directory_durable_with_its_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reps = [sio.Replica(i, f"d{i}", tmp_path / f"d{i}") for i in range(3)]
    for r in reps:
        sio.init_device(r.path, r.device_id)
    seen = _syncs(monkeypatch)
    data = os.urandom(2 * 4096)
    assert sio.write("vk", {0: (data, reps), 1: (data, reps)}, sio.next_gen()) == set()
    dirs = [r.path / "objects" for r in reps]
    assert sorted(seen) == sorted(dirs + [d / "vk" for d in dirs])
    seen.clear()
    assert sio.write("vk", {0: (data, reps)}, sio.next_gen()) == set()
    assert sorted(seen) == sorted(r.path / "objects" / "vk" for r in reps)  # once per process
    for r in reps:
        assert ob.read(r.path, "vk", 1).data == data  # type: ignore[union-attr]


def test_a_directory_left_by_an_aborted_write_is_made_durable_by_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reps = [sio.Replica(i, f"d{i}", tmp_path / f"d{i}") for i in range(3)]
    for r in reps:
        sio.init_device(r.path, r.device_id)
    real = ob.prepare

    def dies_on_d2(device: Path, *a: object, **k: object) -> Path:
        if device == reps[2].path:
            raise OSError(errno.EIO, "disk gone")
        return real(device, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(ob, "prepare", dies_on_d2)
    data = os.urandom(4096)
    assert sio.write("vk", {0: (data, reps)}, sio.next_gen()) == {2}
    assert (reps[0].path / "objects" / "vk").is_dir()  # created, nothing committed in it
    assert not any((reps[0].path / "objects" / "vk").iterdir())  # the prepared file was aborted
    monkeypatch.setattr(ob, "prepare", real)
    seen = _syncs(monkeypatch)
    assert sio.write("vk", {0: (data, reps[:2])}, sio.next_gen()) == set()
    assert set(seen) == {r.path / "objects" for r in reps[:2]} | {r.path / "objects" / "vk" for r in reps[:2]}


def test_a_device_directory_made_again_forgets_what_was_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = sio.Replica(0, "d0", tmp_path / "d0")
    sio.init_device(r.path, r.device_id)
    assert sio.write("vk", {0: (b"a" * 10, [r])}, sio.next_gen()) == set()
    os.rename(r.path, tmp_path / "gone")
    sio.init_device(r.path, 1)  # a new device at the same path
    seen = _syncs(monkeypatch)
    assert sio.write("vk", {0: (b"b" * 10, [r])}, sio.next_gen()) == set()
    assert r.path / "objects" in seen


def test_a_volume_directory_the_collector_removed_is_made_durable_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The garbage collector removes a volume's empty directory (services/volume_gc.py): the
    next write makes it again, and its entry in `objects/` must be fsynced with that commit."""
    r = sio.Replica(0, "d0", tmp_path / "d0")
    sio.init_device(r.path, r.device_id)
    assert sio.write("vk", {0: (b"a" * 10, [r])}, sio.next_gen()) == set()
    shutil.rmtree(r.path / "objects" / "vk")  # (the collector empties it first, then rmdir)
    seen = _syncs(monkeypatch)
    assert sio.write("vk", {0: (b"b" * 10, [r])}, sio.next_gen()) == set()
    assert r.path / "objects" in seen


class _Recorder:
    """A one-thread executor that records what runs: a prepare that waited for a job queued
    behind it would deadlock here."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1)
        self.ran: list[str] = []

    def submit(self, fn: object, *a: object) -> object:
        inner = a[1] if fn is ob._ticketed else fn  # (ticket, partial(job, ...))
        name = getattr(getattr(inner, "func", inner), "__name__", "?")
        return self.pool.submit(lambda: (self.ran.append(name), fn(*a))[1])  # type: ignore[operator]


def _prepare_all(devices: list[Path], chunks: dict[int, bytes], pool: object
                 ) -> tuple[list[tuple[Path, int, Path]], list[Path], dict[int, bytes]]:
    return ob.prepare_replicas(pool, chunks, [(c, d) for c in chunks for d in devices],  # type: ignore[arg-type]
                               lambda d, c, data, sha: ob.prepare(d, "v", c, 5, data, sha))


@pytest.mark.parametrize("direct", [False, True])
def test_replicas_are_written_from_the_callers_buffer_unless_direct_and_read_back_identical(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    """Without O_DIRECT nothing is staged (the prepare gets the caller's bytes); with it, one
    aligned copy per chunk. Either way the files are format 2, byte for byte the same."""
    monkeypatch.setattr(ob, "DIRECT_WRITES", direct)
    devices = []
    for i in range(3):
        sio.init_device(tmp_path / f"d{i}", i)
        ob.ensure_volume_dir(tmp_path / f"d{i}", "v")
        devices.append(tmp_path / f"d{i}")
    chunks = {0: os.urandom(1 << 20), 1: os.urandom(3 * 4096 + 5), 2: os.urandom(1)}
    seen: list[type] = []
    real = ob.prepare

    def spy(device: Path, volume: str, c: int, gen: int, data: ob.Payload, sha: object) -> Path:
        seen.append(type(data))
        if not direct:
            assert data is chunks[c]  # the caller's object itself: no copy
        return real(device, volume, c, gen, data, sha)  # type: ignore[arg-type]

    prepared, failed, shas = ob.prepare_replicas(
        _Recorder().pool, chunks, [(c, d) for c in chunks for d in devices],
        lambda d, c, data, sha: spy(d, "v", c, 5, data, sha))
    assert failed == [] and len(prepared) == 9
    assert set(seen) == ({ob.Staged} if direct and ob._O_DIRECT else {bytes})
    assert shas == {c: ob.digest(b) for c, b in chunks.items()}
    for d, c, tmp in prepared:
        ob.commit(d, "v", c, tmp)
    for c, data in chunks.items():
        expect = ob.HEADER.pack(ob.MAGIC, 2, 5, len(data), ob.digest(data)) + ob._PAD + data
        for d in devices:
            assert ob.object_path(d, "v", c).read_bytes() == expect
            rep = ob.read(d, "v", c)
            assert rep is not None and rep.data == data and rep.gen == 5


def test_each_chunks_hash_is_queued_before_its_replicas_so_one_thread_suffices(device: Path) -> None:
    rec = _Recorder()
    chunks = {c: os.urandom(5000 + c) for c in range(3)}
    prepared, failed, _ = _prepare_all([device], chunks, rec)
    assert failed == [] and len(prepared) == 3
    assert rec.ran == ["_hash", "one"] * 3  # chunk by chunk: its hash, then its replica


def test_a_dead_device_is_reported_and_the_others_still_prepared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices = _devices(tmp_path, 3)
    os.rename(devices[1], tmp_path / "gone")
    prepared, failed, shas = _prepare_all(devices, {0: b"a" * 9000, 1: b"b" * 10}, _Recorder())
    assert failed == [devices[1], devices[1]]
    assert sorted((d.name, c) for d, c, _ in prepared) == [("d0", 0), ("d0", 1), ("d2", 0), ("d2", 1)]
    assert shas[1] == ob.digest(b"b" * 10)


def test_failed_copies_give_their_cpu_slot_back(device: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwrite

    def broken(fd: int, data: object, at: int) -> int:
        raise OSError(errno.EIO, "disk gone")

    monkeypatch.setattr(os, "pwrite", broken)
    for c in range(ob.CPU_SLOTS + 2):
        with pytest.raises(OSError):
            ob.prepare(device, "v", c, 1, b"x" * 100, ob.digest(b"x" * 100))
    monkeypatch.setattr(os, "pwrite", real)
    assert ob._cpu.acquire(timeout=5)  # a slot is free (not leaked by the failures)
    ob._cpu.release()
    ob.commit(device, "v", 0, ob.prepare(device, "v", 0, 1, b"x" * 100, ob.digest(b"x" * 100)))
    assert ob.read(device, "v", 0).data == b"x" * 100  # type: ignore[union-attr]


def test_writeback_is_started_on_the_payload_and_is_only_a_hint(
        device: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int, int]] = []
    monkeypatch.setattr(ob, "_sync_file_range", lambda fd, at, n, flags: calls.append((at, n, flags)) or 0)
    data = os.urandom(3 * 4096 + 3)
    ob.commit(device, "v", 0, ob.prepare(device, "v", 0, 1, data, ob.digest(data)))
    assert calls == [(ob.ALIGN, len(data), ob._SYNC_FILE_RANGE_WRITE)]
    monkeypatch.setattr(ob, "_sync_file_range", None)  # not Linux: the fdatasync alone
    ob.commit(device, "v", 1, ob.prepare(device, "v", 1, 1, data, ob.digest(data)))
    assert ob.read(device, "v", 0).data == ob.read(device, "v", 1).data == data  # type: ignore[union-attr]


def test_sync_file_range_is_found_on_linux() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    assert ob._sync_file_range is not None


def test_a_copy_goes_ahead_without_a_slot_when_every_slot_is_stuck(
        device: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder stuck in a write to a hung filesystem delays the others by CPU_SLOT_WAIT_S, no more."""
    monkeypatch.setattr(ob, "_cpu", threading.BoundedSemaphore(1))
    monkeypatch.setattr(ob, "CPU_SLOT_WAIT_S", 0.05)
    assert ob._cpu.acquire()  # held "forever" by someone else
    data = os.urandom(5000)
    ob.commit(device, "v", 0, ob.prepare(device, "v", 0, 1, data, ob.digest(data)))
    assert ob.read(device, "v", 0).data == data  # type: ignore[union-attr]
    ob._cpu.release()  # (a slot-less copy releasing one would have raised: the semaphore is bounded)
    assert ob._cpu.acquire(timeout=1)
    assert not ob._cpu.acquire(timeout=0)  # still one slot
    ob._cpu.release()


def _replicas(tmp_path: Path, n: int = 3) -> list[sio.Replica]:
    reps = []
    for i in range(n):
        d = tmp_path / f"r{i}"
        sio.init_device(d, 100 + i)
        ob.ensure_volume_dir(d, "v")
        reps.append(sio.Replica(100 + i, f"r{i}", d))
    return reps


def _put(r: sio.Replica, gen: int, data: bytes) -> None:
    ob.commit(r.path, "v", 0, ob.prepare(r.path, "v", 0, gen, data, ob.digest(data)))


def test_a_read_verifies_only_the_replica_whose_header_is_newest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reps = _replicas(tmp_path)
    for r, gen in zip(reps, (4, 9, 9), strict=True):
        _put(r, gen, f"gen {gen}".encode() * 100)
    verified: list[Path] = []
    real = ob.read
    monkeypatch.setattr(ob, "read", lambda d, v, c: verified.append(d) or real(d, v, c))
    rep, bad = sio.read("v", 0, reps)
    assert rep is not None and rep.gen == 9 and rep.data == b"gen 9" * 100 and bad == []
    assert verified == [reps[1].path]  # one payload read and checksummed, not three


def test_a_read_falls_back_newest_first_and_reports_every_bad_replica_when_none_verifies(
        tmp_path: Path) -> None:
    reps = _replicas(tmp_path)
    for r, gen in zip(reps, (4, 9, 7), strict=True):
        _put(r, gen, f"gen {gen}".encode() * 100)
    newest = ob.object_path(reps[1].path, "v", 0)
    raw = bytearray(newest.read_bytes())
    raw[-1] ^= 1  # the newest payload no longer matches its checksum
    newest.write_bytes(bytes(raw))
    rep, bad = sio.read("v", 0, reps)
    assert rep is not None and rep.gen == 7 and bad == [reps[1]]  # the next newest, not the oldest
    ob.object_path(reps[2].path, "v", 0).write_bytes(b"garbage, no header")
    ob.object_path(reps[0].path, "v", 0).write_bytes(b"")
    rep, bad = sio.read("v", 0, reps)
    assert rep is None and sorted(r.device for r in bad) == ["r0", "r1", "r2"]  # lost, not unwritten
    for r in reps:
        ob.object_path(r.path, "v", 0).unlink()
    assert sio.read("v", 0, reps) == (None, [])  # never written
    shutil.rmtree(reps[0].path)
    assert sio.read("v", 0, reps) == (None, [reps[0]])  # a dead device is unreadable


def test_cpu_slots_go_by_ticket_not_by_arrival_and_a_timed_out_waiter_leaves_the_queue() -> None:
    slots = ob._Slots(1)
    assert slots.acquire(timeout=1)  # held: everyone below queues
    order: list[int] = []
    arrived = threading.Semaphore(0)

    def job(ticket: int, timeout: float) -> None:
        ob._job.ticket = ticket
        arrived.release()
        if slots.acquire(timeout=timeout):
            order.append(ticket)
            slots.release()

    threads = []
    for ticket, timeout in ((7, 10.0), (3, 0.05), (5, 10.0), (4, 10.0)):  # arrival order
        th = threading.Thread(target=job, args=(ticket, timeout))
        th.start()
        threads.append(th)
        assert arrived.acquire(timeout=5)
    threads[1].join()  # ticket 3 gave up waiting
    slots.release()
    for th in threads:
        th.join()
    assert order == [4, 5, 7]  # the lowest waiting ticket first; the one that timed out never
    assert slots.acquire(timeout=0) and not slots.acquire(timeout=0)  # one slot, not leaked
    slots.release()


def test_each_chunk_takes_the_cpu_slots_after_the_one_before_and_its_copies_before_its_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices = _devices(tmp_path, 3)
    seen: list[tuple[str, int, int]] = []
    lock = threading.Lock()
    real_hash = ob._hash

    def hash_(data: bytes | memoryview) -> bytes:
        with lock:
            seen.append(("hash", bytes(data[:1])[0], ob._job.ticket))
        return real_hash(data)

    def prep(d: Path, c: int, data: ob.Payload, sha: object) -> Path:
        with lock:
            seen.append(("copy", c, ob._job.ticket))
        return ob.prepare(d, "v", c, 5, data, sha)  # type: ignore[arg-type]

    monkeypatch.setattr(ob, "_hash", hash_)
    chunks = {c: bytes([c]) * 5000 for c in range(3)}
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=8) as pool:
        targets = [(c, d) for c in chunks for d in devices]
        prepared, failed, _ = ob.prepare_replicas(pool, chunks, targets, prep)
    assert failed == [] and len(prepared) == 9
    by_ticket = [(what, c) for what, c, _ in sorted(seen, key=lambda x: x[2])]
    assert by_ticket == [step for c in range(3) for step in [("copy", c)] * 3 + [("hash", c)]]
