"""Volume bytes on `dir` devices under the store's placement (services/volumes.py decides where).

The same checksummed object format and two-phase write as the `dir` backend (objects.py): a
volume's data is cut into objects of its pool's chunk size (callers pass chunk indices and the
bytes; a chunk never straddles a segment), each replicated on the devices the store placed its
segment on. A write prepares every chunk on every replica (write + fsync a temporary file),
then commits (rename + fsync the directory); a device that raises OSError is dead. Reads verify
the checksum and take the newest valid replica. Nothing here touches the database: the callers
hold the placement and decide what a dead device means.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from poolvisor.storage import objects as ob

MiB = 1 << 20
MARKER = ".poolvisor-device"


@dataclass(frozen=True)
class Replica:
    """Where one replica of a segment lives: the device (id, name) and its directory."""

    device_id: int
    device: str
    path: Path


def volume_key(volume_id: int) -> str:
    """A volume's directory on a device: by id, which is never reused (migration 0017), so a new
    volume never sees the bytes a deleted one left behind (create_volume also clears its
    directory, for an id deleted before that upgrade)."""
    return f"v{volume_id}"


def init_device(path: Path, device_id: int) -> None:
    """Make `path` the directory of device row `device_id` (created if missing): its marker names
    the device, so whatever deletes files there first checks the directory is still that device's
    (`owns`); OSError when it cannot be."""
    (path / "objects").mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(f"poolvisor device\nid {device_id}\n")
    ob.fsync_dir(path)
    for key in [k for k in _durable if k[0] == path]:  # a directory made again: nothing is durable yet
        _durable.discard(key)


def device_marker(path: Path) -> int | None:
    """The device id `path`'s marker names; None for a marker written before markers held ids.
    OSError: no marker (or unreadable); ValueError: not a poolvisor device marker."""
    lines = (path / MARKER).read_text().splitlines()
    if not lines or lines[0] != "poolvisor device":
        raise ValueError(f"{path / MARKER} is not a poolvisor device marker")
    ids = [int(x[3:]) for x in lines[1:] if x.startswith("id ") and x[3:].isdigit()]
    return ids[0] if ids else None


def owns(path: Path, device_id: int) -> bool:
    """Whether `path` is device `device_id`'s directory by its marker (fail closed: a missing,
    unreadable, foreign or id-less marker is not)."""
    try:
        return device_marker(path) == device_id
    except (OSError, ValueError):
        return False


def same_dir(a: Path, b: Path) -> bool:
    """Whether two paths are one directory (same device and inode; spelled differently, through
    `..` or a symlink); paths that cannot be examined compare by their real path."""
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


_gen_lock = threading.Lock()
_last_gen = 0


def next_gen() -> int:
    """A generation newer than any this process handed out (nanoseconds of the wall clock)."""
    global _last_gen
    with _gen_lock:
        _last_gen = max(_last_gen + 1, time.time_ns())
        return _last_gen


# fsyncs overlap across replicas; enough threads for a 16 MiB write of 4 MiB objects on 3 replicas
# (4 hashes and 12 prepares) and a second writer, the prepares waiting mostly on the disk
_io = ThreadPoolExecutor(max_workers=32, thread_name_prefix="segment-io")


# (device directory, volume key) pairs whose entry in the device's `objects/` this process made
# durable: the write path creates a volume's directory without an fsync of its own and fsyncs
# `objects/` with its commit, once per pair and process (a directory left by an aborted write or
# by a process that crashed is made durable by the next write that uses it)
_durable: set[tuple[Path, str]] = set()


def _prepare(r: Replica, volume: str, c: int, gen: int, data: ob.Payload,
             sha: Callable[[], bytes]) -> Path:
    """Prepare in the volume's directory; once more when the collector removed the (empty)
    directory between its creation and the open, before the device counts as dead (the
    directory made again is not durable yet: the commit fsyncs its entry)."""
    if ob.ensure_volume_dir(r.path, volume, sync=False):  # made (again, after the collector)
        _durable.discard((r.path, volume))
    try:
        return ob.prepare(r.path, volume, c, gen, data, sha)
    except FileNotFoundError:
        _durable.discard((r.path, volume))
        ob.ensure_volume_dir(r.path, volume, sync=False)
        return ob.prepare(r.path, volume, c, gen, data, sha)


def _prepare_at(path: Path, volume: str, c: int, gen: int, data: bytes | memoryview, sha: bytes) -> Path:
    """A copy's prepare (rebalance, migration): as `_prepare`, the directory made durable at once."""
    ob.ensure_volume_dir(path, volume)
    try:
        return ob.prepare(path, volume, c, gen, data, sha)
    except FileNotFoundError:
        ob.ensure_volume_dir(path, volume)
        return ob.prepare(path, volume, c, gen, data, sha)


def _sync_dirs(r: Replica, volume: str) -> None:
    """The commit's durability on one device: its volume directory (the renames) and, the first
    time this process writes the volume there, `objects/` (the directory's entry); the two fsyncs
    share one journal commit."""
    if (r.path, volume) not in _durable:
        ob.fsync_dir(r.path / "objects")
        ob.fsync_dir(r.path / "objects" / volume)
        _durable.add((r.path, volume))
    else:
        ob.fsync_dir(r.path / "objects" / volume)


Chunks = dict[int, tuple[bytes | memoryview, list[Replica]]]


def write(volume: str, chunks: Chunks, gen: int, during_sync: Callable[[], None] | None = None) -> set[int]:
    """Two-phase write of every chunk to every replica listed; the ids of the devices that failed.

    Prepare everywhere first (objects.prepare_replicas: each chunk hashed once while its bytes go
    to every replica's file in parallel, the header last, one fdatasync per file; the caller's
    buffer is written as it is, or one aligned copy of it with O_DIRECT). If any device failed,
    abort every prepared file (nothing changed) and return the dead. Else commit everywhere: the
    renames, then one directory fsync per device (and of `objects/` the first time, see
    _durable), in parallel; a device dying during commit is returned too (the replicas that did
    commit hold the new generation, the rest the old one). `during_sync` (the caller's commit
    point) runs once every rename is done, while the directory fsyncs are in flight, and only
    when no device failed so far: the write returns (is acknowledged) only after both, so one
    disk round trip is saved, not a guarantee."""
    prepared, failed, _ = ob.prepare_replicas(
        _io, {c: data for c, (data, _) in chunks.items()},
        [(c, r) for c, (_, reps) in chunks.items() for r in reps],
        lambda r, c, data, sha: _prepare(r, volume, c, gen, data, sha))
    dead = {r.device_id for r in failed}
    if dead:
        for _, _, tmp in prepared:
            ob.abort(tmp)
        return dead
    dirs: dict[int, Replica] = {}
    for r, c, tmp in prepared:
        if r.device_id in dead:
            continue
        try:
            ob.commit(r.path, volume, c, tmp)
            dirs[r.device_id] = r
        except OSError:
            dead.add(r.device_id)
    syncs = [(r, _io.submit(_sync_dirs, r, volume))
             for r in dirs.values() if r.device_id not in dead]
    try:
        if during_sync is not None and not dead:
            during_sync()
    finally:
        for r, sync in syncs:  # every directory fsync is waited for, whatever the commit point said
            try:
                sync.result()
            except OSError:
                dead.add(r.device_id)
    return dead


def read(volume: str, chunk: int, reps: list[Replica]) -> tuple[ob.Replica | None, list[Replica]]:
    """The newest verified replica of a chunk (None if no replica holds it) and the replicas found
    corrupt or unreadable (so the caller can tell 'never written' from 'lost': when none
    verifies, every replica was tried and the list is complete).

    The headers are read first (a small read each) and the replicas verified newest claimed
    generation first: the first that verifies is the newest valid one, so one payload is read
    and checksummed, not one per replica; an older one is read only when a newer one fails."""
    bad: list[Replica] = []
    claims: list[tuple[int, int, Replica]] = []
    for i, r in enumerate(reps):
        try:
            gen = ob.header_gen(r.path, volume, chunk)
        except (ob.Corrupt, OSError):
            bad.append(r)
            continue
        if gen is not None:
            claims.append((-gen, i, r))
    for _, _, r in sorted(claims):
        try:
            rep = ob.read(r.path, volume, chunk)
        except (ob.Corrupt, OSError):
            bad.append(r)
            continue
        if rep is not None:
            return rep, bad
    return None, bad


@dataclass(frozen=True)
class Verified:
    """One chunk checked on every replica: whether any replica has a file for it, the newest
    valid one and a replica holding it, and the replicas to rewrite (corrupt, missing, older)."""

    present: bool
    best: ob.Replica | None
    holder: Replica
    repair: list[Replica]


def verify(volume: str, chunk: int, reps: list[Replica]) -> Verified:
    """Read the chunk on every replica (a scrub); an unreadable device counts as needing repair."""
    seen: list[tuple[Replica, ob.Replica | None]] = []
    present = False
    for r in reps:
        try:
            rep = ob.read(r.path, volume, chunk)
            present |= rep is not None
        except (ob.Corrupt, OSError):
            rep, present = None, True
        seen.append((r, rep))
    valid = [(r, x) for r, x in seen if x is not None]
    if not valid:
        return Verified(present, None, reps[0], [])
    holder, best = max(valid, key=lambda rx: rx[1].gen)
    return Verified(True, best, holder, [r for r, x in seen if x is None or x.gen < best.gen])


def read_many(volume: str, chunks: list[tuple[int, list[Replica]]]
              ) -> list[tuple[ob.Replica | None, list[Replica]]]:
    """`read` of many chunks, in parallel (file reads and checksums overlap)."""
    return list(_io.map(lambda cr: read(volume, cr[0], cr[1]), chunks))


def copy(volume: str, chunks: Iterable[int], sources: list[Replica], target: Replica,
         to_volume: str | None = None) -> int:
    """Copy the newest valid replica of each chunk in `chunks` that exists to `target` (same
    generation), as `to_volume`'s chunk (default: the same volume's); bytes copied. OSError when
    the target cannot be written."""
    dst = to_volume or volume
    n = 0
    for c in chunks:
        rep, _ = read(volume, c, sources)
        if rep is None:
            continue
        tmp = _prepare_at(target.path, dst, c, rep.gen, rep.data, ob.digest(rep.data))
        ob.commit(target.path, dst, c, tmp)
        n += len(rep.data)
    if n:
        ob.fsync_dir(target.path / "objects" / dst)
    return n


def header_gen(volume: str, chunk: int, r: Replica) -> int | None:
    """The generation the replica's header of the chunk holds (None: no such object, or the
    device is unreadable); a header read, for deciding what to copy, never for serving bytes."""
    try:
        return ob.read_gen(r.path, volume, chunk)
    except OSError:
        return None


def newest_gen(volume: str, chunk: int, reps: list[Replica]) -> int | None:
    """The newest generation any replica's header holds for the chunk (None: none holds it);
    a dead replica is skipped."""
    return max((g for g in (header_gen(volume, chunk, r) for r in reps) if g is not None), default=None)


def copy_assembled(volume: str, chunk: int, a: int, b: int, src_chunk: int,
                   parts: list[tuple[int, list[Replica]]], targets: list[Replica],
                   to_volume: str | None = None) -> tuple[int, tuple[int | None, ...]]:
    """Write chunk `chunk` (the volume's bytes [a, b)) to every target, assembled from the newest
    valid replica of each source chunk in `parts` (objects of `src_chunk` bytes; one absent or
    short reads as zeros), under the newest of their generations. Returns the bytes written per
    target (0 and nothing written when no source chunk exists) and the source chunks'
    generations (what a later catch-up compares). The copy is `to_volume`'s chunk (default: the
    same volume's). OSError when a target cannot be written."""
    reads = [(k, read(volume, k, reps)[0]) for k, reps in parts]
    gens = tuple(rep.gen if rep is not None else None for _, rep in reads)
    present = [g for g in gens if g is not None]
    if not present:
        return 0, gens
    only = reads[0][1] if len(reads) == 1 else None
    if only is not None and reads[0][0] * src_chunk == a and len(only.data) == b - a:
        data = only.data  # the same object layout: the bytes as they are
    else:
        buf = bytearray(b - a)
        for k, rep in reads:
            if rep is None:
                continue
            lo = k * src_chunk
            x, y = max(a, lo), min(b, lo + src_chunk)
            piece = rep.data[x - lo:y - lo]
            buf[x - a:x - a + len(piece)] = piece
        data = bytes(buf)
    sha, gen, dst = ob.digest(data), max(present), to_volume or volume

    def put(t: Replica) -> None:
        ob.commit(t.path, dst, chunk, _prepare_at(t.path, dst, chunk, gen, data, sha))
        ob.fsync_dir(t.path / "objects" / dst)

    for f in [_io.submit(put, t) for t in targets]:
        f.result()
    return len(data), gens


def behind(volume: str, chunk: int, sources: list[Replica], target: Replica) -> bool:
    """Whether a source holds a newer generation of the chunk than `target` (header reads, not a
    data compare): what a copy made before a switch must copy again at the switch. An unreadable
    target counts as behind (the copy will find it dead and say so)."""
    newest = newest_gen(volume, chunk, sources)
    if newest is None:
        return False
    have = header_gen(volume, chunk, target)
    return have is None or have < newest


def drop(volume: str, chunks: range, path: Path) -> None:
    """Remove a replica's chunks from a device it left (best effort: the device may be gone)."""
    for c in chunks:
        try:
            ob.remove(path, volume, c)
        except OSError:
            return


def drop_volume(volume: str, paths: Iterable[Path]) -> None:
    """Remove a deleted volume's directory from every device (best effort)."""
    for p in paths:
        _durable.discard((p, volume))
        shutil.rmtree(p / "objects" / volume, ignore_errors=True)
