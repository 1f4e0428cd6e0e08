"""The `dir` storage backend: devices are directories, volumes are chunked into replicated objects.

Each chunk of a volume is an object placed by straw2 (`policies.storage.placement`) on R devices
of distinct failure domains. A write is two-phase on every replica (prepare: write + fdatasync a
temporary file; commit: rename + fsync the directory) and is acknowledged only when every live
replica has committed. A device that fails during prepare is marked failed and the chunk is
re-placed without it; reads verify the sha256 and fall back to another replica.

Data stays where it was written until `rebalance()`: it compares the placement the data settled
on with the placement over today's live devices and copies only the objects whose replica set
changed (this is also the re-replication after a failure). `scrub()` verifies every replica and
repairs bad or missing ones from a good one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolvisor.policies.storage.placement import Devices, key64, object_keys, place
from poolvisor.policies.storage.provisioning import PoolSpace
from poolvisor.policies.storage.rebalance import diff
from poolvisor.policies.storage.tiering import demotions
from poolvisor.storage import objects as ob

MARKER = ".poolvisor-device"
Spec = tuple[str, float, str, str]  # a live device as placement sees it: name, weight, domain, class
MiB = 1 << 20


class StorageError(Exception):
    """A request the store cannot serve (unknown volume, out of range, no live replica)."""


class WriteFailed(StorageError):
    """A write that was NOT acknowledged: no chunk of it may be relied upon."""


@dataclass(eq=False)
class Device:
    """A directory acting as a device (compared by identity: one object per device)."""

    name: str
    path: Path
    weight: float
    domain: str
    failed: bool = False
    leaving: bool = False
    capacity: int = 0  # bytes; 0 = not declared (no space accounting for the store)
    klass: str = "ssd"  # device class, for tiering

    @property
    def key(self) -> int:
        return key64(self.name)


@dataclass
class Volume:
    """A volume: its size and the chunks ever written (thin: unwritten chunks read as zeros)."""

    name: str
    size: int
    written: set[int] = field(default_factory=set)
    klass: str | None = None  # device class the volume lives on (None: any)
    settled_klass: str | None = None  # the class its data was last rebalanced onto
    last_access: float = field(default_factory=time.time)


@dataclass(frozen=True)
class MoveReport:
    """What a rebalance, re-replication or scrub did (or would do, with dry_run)."""

    objects: int = 0
    copies: int = 0
    bytes: int = 0
    removed: int = 0
    lost: int = 0


class DirStore:
    """A replicated object store over directories; one instance per process owns the metadata."""

    def __init__(self, meta: Path | None = None, replicas: int = 3, chunk_size: int = 4 * MiB,
                 workers: int = 12, batch_chunks: int = 8, oversubscription: float = 1.0) -> None:
        if replicas < 1 or chunk_size < 1 or batch_chunks < 1:
            raise ValueError("replicas, chunk_size and batch_chunks must be >= 1")
        if oversubscription < 1.0:
            raise ValueError("oversubscription must be >= 1")
        self.meta = meta
        self.oversubscription = oversubscription
        self.replicas = replicas
        self.chunk_size = chunk_size
        self.batch_chunks = batch_chunks
        self.devices: dict[str, Device] = {}
        self.volumes: dict[str, Volume] = {}
        self._settled: list[Spec] = []  # the device set the data is placed on
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dirstore")
        self._lock = threading.RLock()  # whole management operations (never taken by I/O threads)
        self._state = threading.Lock()  # metadata file and generation counter (short, I/O threads too)
        self._gen = itertools.count()
        self._last_gen = 0
        if meta is not None and (meta / "store.json").exists():
            self._load()

    # ---- devices ------------------------------------------------------------------------
    def add_device(self, name: str, path: Path | str, weight: float = 1.0, domain: str | None = None,
                   capacity: int = 0, klass: str = "ssd") -> None:
        """Register a directory as a device (created if missing); data moves to it on rebalance.

        With a `capacity` (bytes) on every live device, volumes are thin-provisioned against it.
        """
        with self._lock:
            if name in self.devices:
                raise StorageError(f"device {name!r} already exists")
            if weight <= 0:
                raise StorageError("device weight must be > 0")
            p = Path(path)
            (p / "objects").mkdir(parents=True, exist_ok=True)
            (p / MARKER).write_text(name)
            ob.fsync_dir(p)
            if capacity < 0:
                raise StorageError("device capacity must be >= 0")
            self.devices[name] = Device(name, p, float(weight), domain or name, capacity=int(capacity),
                                        klass=klass)
            self._settle_if_empty()
            self._save()

    def remove_device(self, name: str) -> None:
        """Graceful leave: the device stops receiving data; `rebalance()` moves its data off."""
        with self._lock:
            self._device(name).leaving = True
            self._settle_if_empty()
            self._save()

    def fail_device(self, name: str) -> None:
        """Mark a device failed: its replicas count as lost until re-replicated by `rebalance()`."""
        with self._lock:
            self._device(name).failed = True
            self._settle_if_empty()
            self._save()

    def check_devices(self) -> list[str]:
        """Health check: a device whose directory or marker is gone is marked failed."""
        newly = []
        with self._lock:
            for d in self.devices.values():
                if not d.failed and not (d.path / MARKER).is_file():
                    d.failed = True
                    newly.append(d.name)
            if newly:
                self._save()
        return newly

    def _settle_if_empty(self) -> None:
        """With no data stored yet, there is nothing to move: the new device set is the settled one."""
        if not any(v.written for v in self.volumes.values()):
            self._settled = self._live_spec()

    def _device(self, name: str) -> Device:
        if name not in self.devices:
            raise StorageError(f"unknown device {name!r}")
        return self.devices[name]

    def _live_spec(self, klass: str | None = None) -> list[Spec]:
        return sorted((d.name, d.weight, d.domain, d.klass) for d in self.devices.values()
                      if not d.failed and not d.leaving and klass in (None, d.klass))

    @staticmethod
    def _of_class(spec: list[Spec], klass: str | None) -> list[Spec]:
        return [x for x in spec if klass in (None, x[3])]

    @staticmethod
    def _devices_of(spec: list[Spec]) -> Devices:
        return Devices.of([s[0] for s in spec], [s[1] for s in spec], [s[2] for s in spec])

    def _by_key(self) -> dict[int, Device]:
        return {d.key: d for d in self.devices.values()}

    def _mark_failed(self, devs: Iterable[Device]) -> None:
        for d in devs:
            d.failed = True
        self._save()

    # ---- volumes ------------------------------------------------------------------------
    def create_volume(self, name: str, size: int) -> Volume:
        """A thin volume of `size` bytes (no space taken until written)."""
        with self._lock:
            if name in self.volumes:
                raise StorageError(f"volume {name!r} already exists")
            if size <= 0 or not name or "/" in name or name.startswith("."):
                raise StorageError("volume needs a size > 0 and a plain name")
            self._check_space(lambda sp: sp.check(size, thin=True))
            v = self.volumes[name] = Volume(name, size)
            self._save()
            return v

    def extend_volume(self, name: str, size: int) -> None:
        """Online extension: a larger size; existing data is untouched."""
        with self._lock:
            v = self._volume(name)
            if size < v.size:
                raise StorageError("a volume cannot shrink")
            if size > v.size:
                self._check_space(lambda sp: sp.check(size - v.size, thin=True))
            v.size = size
            self._save()

    def delete_volume(self, name: str) -> None:
        """Delete a volume and its replicas on every reachable device."""
        with self._lock:
            v = self._volume(name)
            live = [d for d in self.devices.values() if not d.failed]
            for c in v.written:
                for d in live:
                    with contextlib.suppress(OSError):
                        ob.remove(d.path, name, c)
            del self.volumes[name]
            self._save()

    def space(self) -> PoolSpace | None:
        """Usable space (capacity / replicas), provisioned and written bytes; None if undeclared."""
        live = [d for d in self.devices.values() if not d.failed and not d.leaving]
        if not live or any(d.capacity <= 0 for d in live):
            return None
        used = sum(self._chunk_len(v, c) for v in self.volumes.values() for c in v.written)
        return PoolSpace(sum(d.capacity for d in live) // self.replicas,
                         provisioned=sum(v.size for v in self.volumes.values()), thin_used=used,
                         oversubscription=self.oversubscription)

    def _check_space(self, why: Callable[[PoolSpace], str | None]) -> None:
        sp = self.space()
        reason = why(sp) if sp is not None else None
        if reason:
            raise StorageError(reason)

    def _volume(self, name: str) -> Volume:
        if name not in self.volumes:
            raise StorageError(f"unknown volume {name!r}")
        return self.volumes[name]

    # ---- data path ----------------------------------------------------------------------
    def write(self, volume: str, offset: int, data: bytes | memoryview) -> int:
        """Write `data` at `offset`; returns the bytes acknowledged (all of them) or raises WriteFailed."""
        v = self._volume(volume)
        v.last_access = time.time()
        view = memoryview(data).cast("B")
        if offset < 0 or offset + len(view) > v.size:
            raise StorageError(f"write {offset}+{len(view)} outside volume of {v.size} bytes")
        cs = self.chunk_size
        chunks: dict[int, bytes | memoryview] = {}
        pos = 0
        while pos < len(view):
            c, within = divmod(offset + pos, cs)
            n = min(cs - within, len(view) - pos)
            if n == cs or (within == 0 and offset + pos + n == v.size):
                chunks[c] = view[pos:pos + n]
            else:  # partial chunk: read-modify-write
                old = bytearray(self._read_chunk(v, c))
                old[within:within + n] = view[pos:pos + n]
                chunks[c] = bytes(old)
            pos += n
            if len(chunks) == self.batch_chunks:
                self._write_chunks(v, chunks)
                chunks = {}
        if chunks:
            self._write_chunks(v, chunks)
        return len(view)

    def _chunk_len(self, v: Volume, c: int) -> int:
        return min(self.chunk_size, v.size - c * self.chunk_size)

    def _next_gen(self) -> int:
        with self._state:
            self._last_gen = max(self._last_gen + 1, time.time_ns())
            return self._last_gen

    def _write_chunks(self, v: Volume, chunks: dict[int, bytes | memoryview]) -> None:
        idx = sorted(chunks)
        fresh_bytes = sum(self._chunk_len(v, c) for c in idx if c not in v.written)
        if fresh_bytes:
            try:
                self._check_space(lambda sp: sp.check_write(fresh_bytes))
            except StorageError as e:
                raise WriteFailed(f"volume {v.name!r}: {e}") from None
        shas: dict[int, bytes] = {}
        gen = self._next_gen()
        for _ in range(len(self.devices) + 1):  # each retry follows at least one newly failed device
            spec = self._live_spec(v.klass)
            rows = place(object_keys(v.name, idx), self._devices_of(spec), self.replicas)
            by_key = self._by_key()
            targets = [(c, by_key[int(k)]) for c, row in zip(idx, rows, strict=True) for k in row if k]
            if any(not any(row) for row in rows):
                raise WriteFailed(f"volume {v.name!r}: no live device to write to")
            if shas:  # a retry: checksums known
                dead = self._phase(targets, lambda c, d: self._prepare(d, v.name, c, gen, chunks[c], shas[c]))
            else:
                dead = self._hash_and_prepare(v.name, gen, chunks, targets, shas)
            if dead:
                self._abort(targets, v.name, gen, dead)
                self._mark_failed(dead)
                continue
            dead = self._phase(targets,
                               lambda c, d: ob.commit(d.path, v.name, c, self._tmp(d, v.name, c, gen)))
            committed = {c for c, d in targets if d not in dead}
            dead |= self._phase({(0, d) for _, d in targets if d not in dead},
                                lambda c, d: ob.fsync_dir(d.path / "objects" / v.name))
            if dead:
                self._mark_failed(dead)
                committed = {c for c, d in targets if d not in dead}
            if committed != set(idx):
                raise WriteFailed(f"volume {v.name!r}: every replica of some chunks failed during commit")
            with self._lock:
                fresh = set(idx) - v.written
                v.written |= fresh
                if fresh:
                    self._save()
            return
        raise WriteFailed(f"volume {v.name!r}: devices kept failing")

    def _hash_and_prepare(self, volume: str, gen: int, chunks: dict[int, bytes | memoryview],
                          targets: list[tuple[int, Device]], shas: dict[int, bytes]) -> set[Device]:
        """Prepare phase (objects.prepare_replicas, the volume service's too): each chunk hashed
        once while its replicas are written in parallel, the header last; fills `shas` for a
        retry."""
        def prepare(d: Device, c: int, data: ob.Payload, sha: Callable[[], bytes]) -> Path:
            ob.ensure_volume_dir(d.path, volume)
            return ob.prepare(d.path, volume, c, gen, data, sha)

        _, failed, hashed = ob.prepare_replicas(self._pool, chunks, targets, prepare)
        shas.update(hashed)
        return set(failed)

    @staticmethod
    def _tmp(d: Device, volume: str, c: int, gen: int) -> Path:
        return ob.object_path(d.path, volume, c).with_suffix(f".{gen}.tmp")

    def _prepare(self, d: Device, volume: str, c: int, gen: int, data: bytes | memoryview,
                 sha: bytes) -> None:
        ob.ensure_volume_dir(d.path, volume)
        ob.prepare(d.path, volume, c, gen, data, sha)

    def _phase(self, targets: Iterable[tuple[int, Device]], fn: Callable[[int, Device], None]) -> set[Device]:
        """Run fn on every (chunk, device) in parallel; the devices that raised OSError."""
        jobs = [(d, self._pool.submit(fn, c, d)) for c, d in targets]
        dead: set[Device] = set()
        for d, f in jobs:
            try:
                f.result()
            except OSError:
                dead.add(d)
        return dead

    def _abort(self, targets: list[tuple[int, Device]], volume: str, gen: int, dead: set[Device]) -> None:
        for c, d in targets:
            if d not in dead:
                ob.abort(self._tmp(d, volume, c, gen))

    def read(self, volume: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read bytes; every chunk is verified, falling back to another replica when one is bad."""
        v = self._volume(volume)
        v.last_access = time.time()
        length = v.size - offset if length is None else length
        if offset < 0 or length < 0 or offset + length > v.size:
            raise StorageError(f"read {offset}+{length} outside volume of {v.size} bytes")
        if length == 0:
            return b""
        cs = self.chunk_size
        first, last = offset // cs, (offset + length - 1) // cs
        parts = list(self._pool.map(lambda c: self._read_chunk(v, c), range(first, last + 1)))
        buf = b"".join(parts)
        start = offset - first * cs
        return buf[start:start + length]

    def _read_chunk(self, v: Volume, c: int) -> bytes:
        if c not in v.written:
            return bytes(self._chunk_len(v, c))
        rep = self._best_replica(v.name, c, first_valid=True)
        if rep is None:
            raise StorageError(f"volume {v.name!r} chunk {c}: no valid replica left")
        return rep[0].data

    def _candidates(self, volume: str, c: int) -> list[Device]:
        """Devices to try for a chunk: its current placement first, then every other live device."""
        spec = self._live_spec(self.volumes[volume].klass)
        by_key = self._by_key()
        row = place(object_keys(volume, [c]), self._devices_of(spec), self.replicas)[0] if spec else []
        first = [by_key[int(k)] for k in row if k]
        rest = [d for d in self.devices.values() if not d.failed and d not in first]
        return first + rest

    def _best_replica(self, volume: str, c: int, first_valid: bool) -> tuple[ob.Replica, Device] | None:
        """A verified replica: the first valid one in the placement, else the newest anywhere."""
        best: tuple[ob.Replica, Device] | None = None
        cands = self._candidates(volume, c)
        n_placed = min(self.replicas, len(cands))
        for i, d in enumerate(cands):
            if first_valid and best is not None and i >= n_placed:
                break
            try:
                rep = ob.read(d.path, volume, c)
            except ob.Corrupt:
                continue
            except OSError:
                self._mark_failed([d])
                continue
            if rep is not None and (best is None or rep.gen > best[0].gen):
                best = (rep, d)
                if first_valid and i < n_placed:
                    return best
        return best

    # ---- rebalance, re-replication, scrub ----------------------------------------------
    def rebalance(self, dry_run: bool = False) -> MoveReport:
        """Move only the objects whose replica set changed since the data settled; re-replicates too.

        Per volume, "before" is the settled device set restricted to the class the volume's data
        settled on and "after" the live devices of its current class, so a class change (tiering)
        migrates the volume while it stays readable.
        """
        with self._lock:
            self.check_devices()
            after_all = self._live_spec()
            objs: list[tuple[str, int]] = []
            olds, news = [], []
            for v in self.volumes.values():
                idx = sorted(v.written)
                after = self._of_class(after_all, v.klass)
                if not idx or not after:
                    continue
                keys = object_keys(v.name, idx)
                before = self._of_class(self._settled, v.settled_klass)
                new = place(keys, self._devices_of(after), self.replicas)
                olds.append(place(keys, self._devices_of(before), self.replicas) if before
                            else np.zeros_like(new))
                news.append(new)
                objs += [(v.name, c) for c in idx]
            if not objs:
                plan = diff(np.zeros(0, np.uint64), np.zeros((0, self.replicas), np.uint64),
                            np.zeros((0, self.replicas), np.uint64))
            else:
                plan = diff(np.zeros(len(objs), np.uint64), np.concatenate(olds), np.concatenate(news))
            by_key = self._by_key()
            if dry_run:
                sizes = [self._chunk_len(self.volumes[objs[i][0]], objs[i][1]) for i in plan.index]
                return MoveReport(len(plan.index), plan.replica_moves,
                                  int(sum(n * int(np.count_nonzero(t)) for n, t in zip(
                                      sizes, plan.targets, strict=True))))
            results = list(self._pool.map(
                lambda j: self._move(objs[plan.index[j]], [by_key[int(k)] for k in plan.targets[j] if k],
                                     [by_key[int(k)] for k in plan.sources[j] if k]),
                range(len(plan.index))))
            self._settled = after_all
            for v in self.volumes.values():
                v.settled_klass = v.klass
            self._save()
            return MoveReport(len(plan.index), sum(r[0] for r in results), sum(r[1] for r in results),
                              sum(r[2] for r in results), sum(r[3] for r in results))

    def set_volume_class(self, name: str, klass: str | None) -> MoveReport:
        """Move a volume to another device class (tiering): its data migrates, readable throughout."""
        with self._lock:
            v = self._volume(name)
            if klass is not None and not self._live_spec(klass):
                raise StorageError(f"no live device of class {klass!r}")
            v.klass = klass
            self._save()
            return self.rebalance()

    def tier(self, classes: list[str], cold_after: float, now: float | None = None) -> list[tuple[str, str]]:
        """Demote volumes idle for `cold_after` seconds one class slower (classes fastest first)."""
        with self._lock:
            now = time.time() if now is None else now
            vols = [v for v in self.volumes.values() if v.klass in classes]
            free = []
            for k in classes:
                cap = sum(d.capacity for d in self.devices.values()
                          if d.klass == k and not d.failed and not d.leaving)
                held = sum(self._chunk_len(v, c) * self.replicas for v in self.volumes.values()
                           if v.klass == k for c in v.written)
                free.append((cap - held) // self.replicas if cap else 1 << 62)
            moves = demotions([len(v.written) * self.chunk_size for v in vols],
                              [now - v.last_access for v in vols],
                              [classes.index(v.klass) for v in vols if v.klass is not None], free, cold_after)
            done = []
            for i, target in moves:
                self.set_volume_class(vols[i].name, classes[target])
                done.append((vols[i].name, classes[target]))
            return done

    def _move(self, obj: tuple[str, int], targets: list[Device],
              sources: list[Device]) -> tuple[int, int, int, int]:
        """Copy one object to its new replicas, then drop the old ones: (copies, bytes, removed, lost)."""
        volume, c = obj
        best = self._best_replica(volume, c, first_valid=False)
        if best is None:
            return 0, 0, 0, 1
        rep, _ = best
        copies = nbytes = 0
        for d in targets:
            try:
                have = ob.read(d.path, volume, c)
            except ob.Corrupt:
                have = None
            except OSError:
                self._mark_failed([d])
                continue
            if have is not None and have.gen >= rep.gen:
                continue  # written there since the device set changed
            if self._copy(d, volume, c, rep):
                copies, nbytes = copies + 1, nbytes + len(rep.data)
        removed = 0
        for d in sources:
            if not d.failed:
                try:
                    ob.remove(d.path, volume, c)
                    removed += 1
                except OSError:
                    self._mark_failed([d])
        return copies, nbytes, removed, 0

    def _copy(self, d: Device, volume: str, c: int, rep: ob.Replica) -> bool:
        try:
            ob.ensure_volume_dir(d.path, volume)
            tmp = ob.prepare(d.path, volume, c, rep.gen, rep.data, ob.digest(rep.data))
            ob.commit(d.path, volume, c, tmp)
            ob.fsync_dir(d.path / "objects" / volume)
            return True
        except OSError:
            self._mark_failed([d])
            return False

    def scrub(self) -> MoveReport:
        """Verify every replica in the current placement; repair bad, stale or missing ones."""
        with self._lock:
            self.check_devices()
            by_key = self._by_key()
            checked = repaired = nbytes = lost = 0
            for v in self.volumes.values():
                idx = sorted(v.written)
                spec = self._live_spec(v.klass)
                if not idx or not spec:
                    lost += 0 if spec else len(idx)
                    continue
                rows = place(object_keys(v.name, idx), self._devices_of(spec), self.replicas)
                for c, row in zip(idx, rows, strict=True):
                    checked += 1
                    best = self._best_replica(v.name, c, first_valid=False)
                    if best is None:
                        lost += 1
                        continue
                    for k in row:
                        if not k:
                            continue
                        d = by_key[int(k)]
                        try:
                            have = ob.read(d.path, v.name, c)
                        except ob.Corrupt:
                            have = None
                        except OSError:
                            self._mark_failed([d])
                            continue
                        if (have is None or have.gen < best[0].gen) and self._copy(d, v.name, c, best[0]):
                            repaired += 1
                            nbytes += len(best[0].data)
            return MoveReport(checked, repaired, nbytes, 0, lost)

    def replica_count(self, volume: str, c: int) -> int:
        """Live devices holding a valid, newest replica of a chunk (for tests and reports)."""
        best = self._best_replica(volume, c, first_valid=False)
        if best is None:
            return 0
        n = 0
        for d in self.devices.values():
            if d.failed:
                continue
            try:
                rep = ob.read(d.path, volume, c)
            except (ob.Corrupt, OSError):
                continue
            n += rep is not None and rep.gen == best[0].gen
        return n

    # ---- metadata -----------------------------------------------------------------------
    def _save(self) -> None:
        if self.meta is None:
            return
        with self._state:
            self._save_locked(self.meta)

    def _save_locked(self, meta: Path) -> None:
        meta.mkdir(parents=True, exist_ok=True)
        doc = {
            "replicas": self.replicas, "chunk_size": self.chunk_size, "last_gen": self._last_gen,
            "oversubscription": self.oversubscription,
            "settled": self._settled,
            "devices": [{"name": d.name, "path": str(d.path), "weight": d.weight, "domain": d.domain,
                         "failed": d.failed, "leaving": d.leaving, "capacity": d.capacity}
                        for d in self.devices.values()],
            "volumes": [{"name": v.name, "size": v.size, "written": sorted(v.written), "klass": v.klass,
                         "settled_klass": v.settled_klass}
                        for v in self.volumes.values()],
        }
        tmp = meta / "store.json.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, meta / "store.json")
        ob.fsync_dir(meta)

    def _load(self) -> None:
        assert self.meta is not None
        doc = json.loads((self.meta / "store.json").read_text())
        self.replicas, self.chunk_size = int(doc["replicas"]), int(doc["chunk_size"])
        self._last_gen = int(doc["last_gen"])
        self._settled = [(str(s[0]), float(s[1]), str(s[2]), str(s[3])) for s in doc["settled"]]
        self.devices = {d["name"]: Device(d["name"], Path(d["path"]), d["weight"], d["domain"],
                                          d["failed"], d["leaving"], d.get("capacity", 0),
                                          d.get("klass", "ssd"))
                        for d in doc["devices"]}
        self.oversubscription = float(doc.get("oversubscription", 1.0))
        self.volumes = {v["name"]: Volume(v["name"], v["size"], set(v["written"]), v.get("klass"),
                                          v.get("settled_klass")) for v in doc["volumes"]}

    def close(self) -> None:
        """Stop the I/O threads."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> DirStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
