"""`poolvisor bench storage`: rebalance movement vs the ideal, and the `dir` backend's data path.

Movement is measured on a synthetic cluster (placement only, no I/O). Throughput is measured with
real files in a temporary directory on one disk: all replicas share it, so the replicated write
rate's physical limit is a third of a plain sequential write of the same bytes to one file with
one fsync at the end (`raw_write_mb_s`, the issue's reference, measured in the same run,
interleaved). The same bytes as files of the object size, each fdatasynced, then the directory
fsynced once (what a replica must do at least to make its objects durable one by one) are
reported too, `raw_object_write_mb_s`. The replicated write is measured as one call of the whole
size (one durability point, like the reference) and in smaller calls (`split_*`). The device-kill run
renames a device's directory during a stream of writes, re-replicates, and counts acknowledged
bytes that do not read back identical.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.policies.storage.placement import Devices, mix64
from poolvisor.policies.storage.rebalance import moved_over_ideal
from poolvisor.storage.dirstore import DirStore, MiB, WriteFailed


def movement(objects: int = 100_000, devices: int = 24, domains: int = 8, replicas: int = 3,
             seed: int = 1) -> dict[str, float]:
    """Fraction of replicas moved when one device joins and when one leaves, over the ideal."""
    rng = np.random.default_rng(seed)
    names = [f"d{i}" for i in range(devices)]
    weights = [float(w) for w in rng.choice([1.0, 2.0, 4.0], size=devices)]
    doms = [f"h{i % domains}" for i in range(devices)]
    objs = mix64(np.arange(objects, dtype=np.uint64) + np.uint64(seed << 40))
    base = Devices.of(names, weights, doms)
    joined = Devices.of([*names, "new"], [*weights, 2.0], [*doms, "h0"])
    left = Devices.of(names[1:], weights[1:], doms[1:])
    jf, jr = moved_over_ideal(objs, base, joined, replicas, 2.0)
    lf, lr = moved_over_ideal(objs, base, left, replicas, weights[0])
    return {"join_moved_fraction": jf, "join_moved_over_ideal": jr, "leave_moved_fraction": lf,
            "leave_moved_over_ideal": lr, "moved_over_ideal": max(jr, lr)}


def _raw_objects(path: Path, total: int, chunk: int) -> float:
    """Seconds for plain sequential writes of `total` bytes as files of `chunk` bytes, each
    fdatasynced, then one directory fsync: what a replica of the store's write must do at least
    (its objects are files of the chunk size, durable before the write is acknowledged)."""
    buf = os.urandom(chunk)
    path.mkdir()
    t = time.perf_counter()
    for i in range(-(-total // chunk)):
        fd = os.open(path / f"{i:010d}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, buf[:min(chunk, total - i * chunk)])
            os.fdatasync(fd)
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    took = time.perf_counter() - t
    shutil.rmtree(path)
    return took


def _raw_write(path: Path, total: int, chunk: int) -> float:
    """Seconds for a plain sequential write of `total` bytes in `chunk` pieces, then one fsync."""
    buf = os.urandom(chunk)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(total // chunk):
            os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t


def _store(root: Path, devices: int, replicas: int, chunk: int) -> DirStore:
    s = DirStore(root / "meta", replicas=replicas, chunk_size=chunk)
    for i in range(devices):
        s.add_device(f"d{i}", root / f"dev{i}", domain=f"h{i}")
    return s


def throughput(root: Path, size: int, chunk: int, replicas: int = 3, devices: int = 6,
               rounds: int = 3) -> dict[str, float]:
    """MB/s of replicated writes and verified reads, and of raw sequential writes (same disk).

    Raw and replicated writes alternate for `rounds` rounds and the best of each is kept: the
    disk is shared, and interleaving exposes both to the same background load.
    """
    best = {"raw": float("inf"), "write": float("inf"), "read": float("inf")}
    data = os.urandom(size)
    for r in range(rounds):
        best["raw"] = min(best["raw"], _raw_write(root / "raw.bin", size, chunk))
        os.unlink(root / "raw.bin")
        with _store(root / f"tp{r}", devices, replicas, chunk) as s:
            s.create_volume("bench", size)
            t = time.perf_counter()
            s.write("bench", 0, data)
            best["write"] = min(best["write"], time.perf_counter() - t)
            t = time.perf_counter()
            ok = s.read("bench") == data
            best["read"] = min(best["read"], time.perf_counter() - t)
        shutil.rmtree(root / f"tp{r}")
        if not ok:
            raise RuntimeError("read-back mismatch in the throughput run")
    mb = size / 1e6
    write, raw = mb / best["write"], mb / best["raw"]
    return {"dirstore_write_mb_s": write, "dirstore_read_mb_s": mb / best["read"],
            "dirstore_raw_write_mb_s": raw, "dirstore_write_over_raw_third": write / (raw / replicas)}


def device_kill(root: Path, chunks: int = 256, writes: int = 600, chunk: int = 64 * 1024,
                replicas: int = 3, devices: int = 6, seed: int = 1) -> dict[str, int]:
    """Random chunk writes with a device killed (directory renamed) part-way; then verify all acked."""
    rnd = random.Random(seed)
    acked: dict[int, bytes] = {}
    failed = 0
    go = threading.Event()
    victim = root / "kill" / "dev2"

    def kill() -> None:
        go.wait()
        os.rename(victim, victim.with_suffix(".dead"))

    killer = threading.Thread(target=kill)
    with _store(root / "kill", devices, replicas, chunk) as s:
        s.create_volume("k", chunks * chunk)
        killer.start()
        for k in range(writes):
            if k == writes // 3:
                go.set()
            c = rnd.randrange(chunks)
            buf = rnd.randbytes(chunk)
            try:
                s.write("k", c * chunk, buf)
            except WriteFailed:
                failed += 1
                continue
            acked[c] = buf
        killer.join()
        rep = s.rebalance()
        lost = sum(chunk for c, buf in acked.items() if s.read("k", c * chunk, chunk) != buf)
        short = sum(s.replica_count("k", c) < replicas for c in acked)
    shutil.rmtree(root / "kill")
    return {"acked_lost": lost, "acked_bytes": len(acked) * chunk, "writes_failed": failed,
            "rereplicated_copies": rep.copies, "under_replicated_after": short}


def service_rebalance(root: Path, devices: int = 16, domains: int = 8, volumes: int = 8,
                      volume_gib: int = 100, segment_mib: int = 256) -> dict[str, Any]:
    """The same join and leave through the store (VolumeService on a temporary SQLite): replicas
    the rebalance plans and moves over the ideal (the device's capacity share), then a failure's
    re-replication; every figure read from the service's own plan and result."""
    import time

    from poolvisor.services import open_services

    with open_services(f"sqlite:///{root / 'service.db'}") as svc:
        svc.catalog.create_project("bench")
        v = svc.volumes
        v.create_pool("bench", segment_mib=segment_mib)
        for i in range(devices):
            v.add_device("bench", f"d{i}", 1 << 20, domain=f"rack{i % domains}")
        for i in range(volumes):
            v.create_volume("bench", f"v{i}", "bench", volume_gib * 1024, thin=False)
        total = sum(x.segments * x.replicas for x in v.list_volumes())
        v.add_device("bench", "new", 1 << 20, domain=f"rack{domains}")
        ideal = total / (devices + 1)
        t0 = time.perf_counter()
        join = v.rebalance("bench")
        join_s = time.perf_counter() - t0
        v.set_device_state("bench", "d0", "leaving")
        leave = v.rebalance("bench")
        v.set_device_state("bench", "d1", "failed")
        fail = v.rebalance("bench")
        under = v.get_pool("bench").under_replicated
    return {"service_replicas_total": total, "service_join_moved_over_ideal": join.copies / ideal,
            "service_leave_moved_over_ideal": leave.copies / ideal, "service_join_rebalance_s": join_s,
            "service_rereplicated": fail.copies, "service_lost": fail.lost,
            "service_under_replicated_after": under}


def _service_pool(svc: Any, base: Path, devices: int, capacity_mib: int, segment_mib: int = 64) -> None:
    svc.catalog.create_project("bench")
    svc.volumes.create_pool("bench", segment_mib=segment_mib)
    for i in range(devices):
        svc.volumes.add_device("bench", f"d{i}", capacity_mib, domain=f"h{i % 3}", path=str(base / f"dev{i}"))


def service_data(root: Path, size: int, io: int, rounds: int = 3, devices: int = 6) -> dict[str, float]:
    """Replicated writes and verified reads through VolumeService, the path the API, the guest
    disks and migrations use (bytes on `dir` devices under the store's placement, replication 3,
    SQLite, the pool's default object size), best of `rounds`, against raw writes interleaved the
    same way: one file synced once (the reference, `raw_write_mb_s`) and files of the object size
    made durable one by one (`raw_object_write_mb_s`).

    The headline `write_mb_s` writes the `size` bytes in one call (calls of the service's largest,
    MAX_IO, above it), acknowledged once durable: the same bytes and the same one durability point
    as the reference's single fsync, so the ratio compares like with like. The same bytes in calls
    of `io` bytes (`split_*`) pay one durability wait per call, which a caller writing one call
    after another cannot overlap; both are printed.
    """
    from poolvisor.services import open_services
    from poolvisor.services.volumes import MAX_IO

    best = dict.fromkeys(("raw", "stream", "write", "read", "split_write", "split_read"), float("inf"))
    data = memoryview(os.urandom(size))
    mib = -(-size // MiB)
    chunk = 0
    for r in range(rounds):
        base = root / f"svc{r}"
        base.mkdir()
        with open_services(f"sqlite:///{base / 'svc.db'}") as svc:
            _service_pool(svc, base, devices, 8 * mib + 1024)
            chunk = svc.volumes.get_pool("bench").chunk_mib * MiB
            best["raw"] = min(best["raw"], _raw_objects(root / "raw", size, chunk))
            best["stream"] = min(best["stream"], _raw_write(root / "raw.bin", size, chunk))
            os.unlink(root / "raw.bin")
            for name, step in (("", min(size, MAX_IO)), ("split_", io)):
                vol = f"v{name}"
                svc.volumes.create_volume("bench", vol, "bench", mib, thin=False)
                t = time.perf_counter()
                for off in range(0, size, step):
                    svc.volumes.write_data("bench", vol, off, data[off:off + step])
                best[f"{name}write"] = min(best[f"{name}write"], time.perf_counter() - t)
                t = time.perf_counter()
                back = b"".join(svc.volumes.read_data("bench", vol, off, min(step, size - off))
                                for off in range(0, size, step))
                best[f"{name}read"] = min(best[f"{name}read"], time.perf_counter() - t)
                if back != data:
                    raise RuntimeError("read-back mismatch in the service data run")
        shutil.rmtree(base)
    mb = size / 1e6
    write, split, objects, stream = (mb / best[k] for k in ("write", "split_write", "raw", "stream"))
    return {"write_mb_s": write, "read_mb_s": mb / best["read"], "raw_write_mb_s": stream,
            "write_over_raw_third": write / (stream / 3), "raw_object_write_mb_s": objects,
            "write_over_raw_object_third": write / (objects / 3), "io_mib": io / MiB,
            "split_write_mb_s": split, "split_read_mb_s": mb / best["split_read"],
            "split_write_over_raw_third": split / (stream / 3), "object_mib": chunk / MiB}


def service_device_kill(root: Path, writes: int = 120, io: int = 256 * 1024, volume_mib: int = 64,
                        devices: int = 6, seed: int = 1) -> dict[str, int]:
    """The device-kill run through VolumeService: random writes while another thread renames a
    device's directory away; every acknowledged write must read back identical, before and after
    the rebalance that re-replicates the dead device's segments. Sixteen segments, so that every
    device holds some."""
    from poolvisor.domain.errors import ConflictError
    from poolvisor.services import open_services

    rnd = random.Random(seed)
    base = root / "svckill"
    base.mkdir()
    acked: dict[int, bytes] = {}
    failed = 0
    go = threading.Event()
    victim = base / "dev2"
    def kill() -> None:
        go.wait()
        os.rename(victim, victim.with_suffix(".dead"))

    killer = threading.Thread(target=kill)
    with open_services(f"sqlite:///{base / 'svc.db'}") as svc:
        _service_pool(svc, base, devices, 4 * volume_mib + 1024, segment_mib=max(1, volume_mib // 16))
        svc.volumes.create_volume("bench", "k", "bench", volume_mib)
        killer.start()
        for k in range(writes):
            if k == writes // 3:
                go.set()
            at = rnd.randrange(volume_mib * MiB // io) * io
            buf = rnd.randbytes(io)
            try:
                svc.volumes.write_data("bench", "k", at, buf)
            except ConflictError:
                failed += 1
                continue
            for a in list(acked):  # an acknowledged write replaces what it overlaps
                if a < at + io and at < a + io:
                    del acked[a]
            acked[at] = buf
        killer.join()
        lost = sum(io for a, buf in acked.items() if svc.volumes.read_data("bench", "k", a, io) != buf)
        rep = svc.volumes.rebalance("bench")
        lost += sum(io for a, buf in acked.items() if svc.volumes.read_data("bench", "k", a, io) != buf)
        short = svc.volumes.get_pool("bench").under_replicated
        dead = [d.name for d in svc.volumes.get_pool("bench").devices if d.state == "failed"]
    shutil.rmtree(base)
    return {"acked_lost": lost, "acked_bytes": len(acked) * io, "writes_failed": failed,
            "rereplicated_copies": rep.copies, "under_replicated_after": short,
            "devices_failed": len(dead)}


def run(size_mib: int = 32, chunk_mib: int = 4, rounds: int = 5, tmp: str | None = None,
        volume_gib: int = 100, io_mib: int = 16) -> dict[str, Any]:
    """All figures in one dict (the temporary directory is removed). `write_mb_s`, `read_mb_s`,
    `acked_lost` are measured through VolumeService (the path users run); `dirstore_*` are the
    standalone DirStore backend's."""
    root = Path(tempfile.mkdtemp(prefix="poolvisor-bench-storage-", dir=tmp))
    try:
        out: dict[str, Any] = {"replicas": 3, "size_mib": size_mib, "chunk_mib": chunk_mib,
                               "rounds": rounds}
        out.update(movement())
        out.update(service_data(root, size_mib * MiB, min(io_mib, size_mib) * MiB, rounds=rounds))
        out.update(service_device_kill(root))
        out.update(throughput(root, size_mib * MiB, chunk_mib * MiB, rounds=rounds))
        out.update({f"dirstore_{k}": v for k, v in device_kill(root).items()})
        out.update(service_rebalance(root, volume_gib=volume_gib))
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)
