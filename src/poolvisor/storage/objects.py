"""One replica of one object on one device: a file with a header (generation, length, sha256).

Writes are two-phase: `prepare` writes and fdatasyncs `<name>.<gen>.tmp` (data and the size it
needs to be read back: a new file has no other metadata worth a journal write), `commit` renames
it over the object, and the caller fsyncs the directory once per write. Any OSError means the
device is gone (its directory was removed or renamed, the disk failed): callers mark the device
failed.

Format 2 (written now) puts the payload at 4 KiB, after the header and zeros, so that a payload
staged once in page-aligned memory (`Staged`) can go to every replica's file with O_DIRECT (with
POOLVISOR_DIRECT_IO=1: no copy into the page cache per replica, which saves CPU on a loaded
machine, but on an idle one the page cache wrote faster and left what was written cached for the
reads that follow; see DIRECT_WRITES). Through the page cache (the default) nothing is staged: the
caller's buffer is written as it is. A directory that refuses O_DIRECT (tmpfs, some FUSE) is
written through the page cache instead, same format. Format 1 (payload at 64 bytes) is still read.

`prepare_replicas` is phase 1 of a replicated write for both writers (the `dir` backend,
dirstore.py, and the volume service's segment_io.py): one implementation of the hashing, staging
and parallel prepares. Its CPU-bound steps (hashes, copies into the page cache) take CPU_SLOTS in
queue order and each payload's writeback starts as soon as it is copied, so the disk writes the
first replicas out while the next are copied; nothing is acknowledged before the fdatasync.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import heapq
import itertools
import mmap
import os
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

MAGIC = b"PVOB"
HEADER = struct.Struct("<4sHxxQQ32s")
HEADER_SIZE = 64  # format 1: the payload's offset
ALIGN = 4096  # format 2: the payload's offset, and the alignment of direct I/O (a page)
VERSION = 2
_PAD = bytes(ALIGN - HEADER.size)  # what format 2 holds between its header and its payload
_O_DIRECT = getattr(os, "O_DIRECT", 0)
#: write staged payloads with O_DIRECT (POOLVISOR_DIRECT_IO=1). Off by default: measured on this
#: machine idle (`poolvisor bench storage`, three runs each), writes through the page cache did
#: 211-250 MB/s against 136-209 with O_DIRECT, and reads of what was just written 157-170 MB/s
#: against 78-122 (O_DIRECT leaves nothing cached); O_DIRECT only won under heavy CPU load
DIRECT_WRITES = os.environ.get("POOLVISOR_DIRECT_IO") == "1"


class Corrupt(Exception):
    """A replica that exists but does not verify (bad header, short, wrong checksum)."""


@dataclass(frozen=True)
class Replica:
    """A verified replica's payload and generation."""

    gen: int
    data: bytes


def digest(data: bytes | memoryview) -> bytes:
    """sha256 of a payload (hashlib releases the GIL for large buffers, so threads overlap)."""
    return hashlib.sha256(data).digest()


def object_path(device: Path, volume: str, chunk: int) -> Path:
    """Where a chunk's replica lives on a device."""
    return device / "objects" / volume / f"{chunk:010d}"


def ensure_volume_dir(device: Path, volume: str, *, sync: bool = True) -> bool:
    """Create the volume's directory on a device (never the device itself: a missing one is dead);
    whether this call created it. `sync=False` leaves the fsync of `objects/` that makes the new
    entry durable to the caller (the write path does it with its commit's directory fsyncs, in the
    same journal commit, instead of one more before its first byte)."""
    d = device / "objects" / volume
    if not d.is_dir():
        try:
            os.mkdir(d)
        except FileExistsError:
            return False
        if sync:
            fsync_dir(d.parent)
        return True
    return False


def fsync_dir(path: Path) -> None:
    """fsync a directory so that renames and creations in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _round_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


_spare_lock = threading.Lock()
_spare: list[mmap.mmap] = []  # staging buffers kept for the next writes (faulted in already)
SPARE_BYTES = 32 << 20  # at most this much kept between writes


class Staged:
    """A payload copied once into page-aligned memory, zero-padded to a whole page, for the direct
    writes of all its replicas; `release` returns the memory for the next write (buffers are
    reused: fresh pages cost a fault each, reused ones a plain memcpy)."""

    def __init__(self, data: bytes | memoryview) -> None:
        src = memoryview(data).cast("B")
        self.length = len(src)
        size = max(ALIGN, _round_up(self.length))
        with _spare_lock:
            buf = next((m for m in _spare if len(m) == size), None)
            if buf is not None:
                _spare.remove(buf)
        self._buf = buf if buf is not None else mmap.mmap(-1, size)
        self.padded = memoryview(self._buf)
        self.padded[:self.length] = src
        if size > self.length:
            self.padded[self.length:] = bytes(size - self.length)

    @property
    def payload(self) -> memoryview:
        return self.padded[:self.length]

    def release(self) -> None:
        """Give the memory back (after every replica's prepare returned)."""
        self.padded.release()
        with _spare_lock:
            if sum(map(len, _spare)) + len(self._buf) <= SPARE_BYTES:
                _spare.append(self._buf)
                return
        with contextlib.suppress(BufferError):  # a view still alive: unmapped when it is collected
            self._buf.close()


Payload = bytes | memoryview | Staged  # what a prepare writes: the caller's bytes, or a staged copy
T = TypeVar("T")

_no_direct: set[Path] = set()  # device directories whose filesystem refused O_DIRECT
_header_block = threading.local()


def _header(gen: int, length: int, sha: bytes) -> memoryview:
    """A page-aligned page holding a format 2 header (per thread, reused)."""
    block = getattr(_header_block, "page", None)
    if block is None:
        block = _header_block.page = mmap.mmap(-1, ALIGN)
    block[:HEADER.size] = HEADER.pack(MAGIC, VERSION, gen, length, sha)
    return memoryview(block)


def _pwrite_all(fd: int, data: memoryview, at: int) -> None:
    done = 0
    while done < len(data):  # a short write continues where it stopped
        done += os.pwrite(fd, data[done:], at + done)


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writing the range's dirty pages out; wait for nothing


def start_writeback(fd: int, at: int, length: int) -> None:
    """Ask the kernel to start writing a range out now (Linux sync_file_range with WRITE only: it
    waits for nothing and consumes no writeback error, so nothing is durable and no error is lost
    before the fdatasync that follows), so that the disk works on a replica's payload while its
    checksum is finished and the next files are copied, instead of all at once at the
    fdatasyncs."""
    if _sync_file_range is not None:
        _sync_file_range(fd, at, length, _SYNC_FILE_RANGE_WRITE)


#: the CPU-bound steps of a write (hashing a chunk, copying a payload into the page cache) run at
#: most this many at once, in the order of their tickets (see _Slots): with every replica copying
#: at once on few cores, all would finish together and the disk would wait for the last; this way
#: the first files are written out (start_writeback) while the next are copied
CPU_SLOTS = max(1, os.cpu_count() or 1)
#: a slot is an ordering aid, never a lock anything waits on for long: a copy that has waited this
#: long (a holder stuck in a write to a hung filesystem) goes ahead without one
CPU_SLOT_WAIT_S = 1.0
_tickets = itertools.count()
_job = threading.local()  # the ticket of the job this thread runs (prepare_replicas sets it)


class _Slots:
    """CPU slots handed over in ticket order (prepare_replicas gives each step its ticket as it
    queues it), not in the order threads arrive: the segment pool starts every job of a write at
    once, and which thread reaches the slots first is the scheduler's choice, so a later chunk's
    copy could go before an earlier chunk's hash and the write end on work that the disk then
    still waits for. A released slot goes straight to the lowest waiting ticket (a free slot means
    nobody waits); a thread without a ticket queues behind every ticket issued so far."""

    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self._free = n
        self._waiting: list[tuple[int, threading.Event]] = []  # a heap by ticket

    def acquire(self, timeout: float) -> bool:
        ticket = getattr(_job, "ticket", None)
        with self._lock:
            if self._free > 0:  # (a free slot means nobody waits)
                self._free -= 1
                return True
            ready = threading.Event()
            heapq.heappush(self._waiting, (next(_tickets) if ticket is None else ticket, ready))
        if ready.wait(timeout):
            return True
        with self._lock:
            if ready.is_set():  # handed over while timing out: it is ours
                return True
            self._waiting = [w for w in self._waiting if w[1] is not ready]
            heapq.heapify(self._waiting)
            return False

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                heapq.heappop(self._waiting)[1].set()  # handed over, never free in between
            else:
                self._free += 1


_cpu: _Slots | threading.BoundedSemaphore = _Slots(CPU_SLOTS)


@contextlib.contextmanager
def _cpu_slot() -> Iterator[None]:
    got = _cpu.acquire(timeout=CPU_SLOT_WAIT_S)
    try:
        yield
    finally:
        if got:
            _cpu.release()


def _hash(data: bytes | memoryview) -> bytes:
    with _cpu_slot():
        return digest(data)


def _ticketed(ticket: int, fn: Callable[[], T]) -> T:
    """Run fn with `ticket` as this thread's place in the CPU slots' queue."""
    _job.ticket = ticket
    try:
        return fn()
    finally:
        _job.ticket = None


def prepare(device: Path, volume: str, chunk: int, gen: int, data: Payload,
            sha: bytes | Callable[[], bytes]) -> Path:
    """Phase 1: write and fdatasync the replica under a temporary name; returns that name.

    A `Staged` payload is written with O_DIRECT where the filesystem takes it. `sha` may be a
    function that waits for the checksum (another thread computing it): the payload is written
    first and the header last, before the one fdatasync, so the hash of a chunk overlaps the
    writes of its bytes."""
    tmp = object_path(device, volume, chunk).with_suffix(f".{gen}.tmp")
    if isinstance(data, Staged) and DIRECT_WRITES and _O_DIRECT and device not in _no_direct:
        try:
            _prepare_direct(tmp, gen, data, sha)
            return tmp
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            _no_direct.add(device)  # refused (not a failure of the device): the page cache then
    payload = data.payload if isinstance(data, Staged) else memoryview(data).cast("B")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with _cpu_slot():
            _pwrite_all(fd, payload, ALIGN)
        start_writeback(fd, ALIGN, len(payload))
        digest_ = sha if isinstance(sha, bytes) else sha()
        _pwrite_all(fd, memoryview(HEADER.pack(MAGIC, VERSION, gen, len(payload), digest_) + _PAD), 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return tmp


def _prepare_direct(tmp: Path, gen: int, data: Staged, sha: bytes | Callable[[], bytes]) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT, 0o600)
    try:
        _pwrite_all(fd, data.padded, ALIGN)
        header = _header(gen, data.length, sha if isinstance(sha, bytes) else sha())
        try:
            _pwrite_all(fd, header, 0)
        finally:
            header.release()
        if len(data.padded) != data.length:
            os.ftruncate(fd, ALIGN + data.length)  # the zeros of the last page are not the payload's
        os.fdatasync(fd)
    finally:
        os.close(fd)


def commit(device: Path, volume: str, chunk: int, tmp: Path) -> None:
    """Phase 2: atomically replace the replica with the prepared file."""
    os.rename(tmp, object_path(device, volume, chunk))


def staging() -> bool:
    """Whether writes stage their payloads (a copy into aligned memory): only for O_DIRECT, which
    needs aligned buffers; through the page cache the copy would only cost a memcpy per chunk."""
    return DIRECT_WRITES and bool(_O_DIRECT)


def _stage(data: bytes | memoryview) -> Staged:
    try:
        return Staged(data)
    except OSError as e:  # no memory to map: not the device's failure
        raise MemoryError(f"cannot stage a chunk for writing: {e}") from e


def prepare_replicas(pool: Executor, chunks: Mapping[int, bytes | memoryview],
                     targets: Sequence[tuple[int, T]],
                     prepare_one: Callable[[T, int, Payload, Callable[[], bytes]], Path]
                     ) -> tuple[list[tuple[T, int, Path]], list[T], dict[int, bytes]]:
    """Phase 1 of a replicated write: every (chunk, target) prepared in `pool` in parallel by
    `prepare_one(target, chunk, payload, sha)`; returns the prepared files, the targets that raised
    OSError (dead devices: the caller aborts the rest) and each chunk's checksum.

    Each chunk is hashed once, in the pool (hashlib releases the GIL, so chunks hash in parallel
    and overlap the writes of their bytes: `sha` waits for it, and `prepare` writes the header
    last). The payload is the caller's buffer itself, or with O_DIRECT (`staging()`) one staged
    copy per chunk shared by its replicas and released when every prepare returned. Jobs are
    queued chunk by chunk (its hash, then its replicas), and the pool is FIFO: a prepare never
    waits for a job behind it. The CPU slots (CPU_SLOTS) are handed over by ticket (_Slots): chunk
    by chunk, so the first chunks' files are written out while the next are copied, and within a
    chunk its copies before its hash, so a chunk's hash runs while its copies' bytes go to the
    disk and a write ends on a hash, not on a copy whose 4 MiB the disk still has to take (a 16
    MiB write through the volume service: median 87-96 -> 83-84 ms per 32 MiB against slots in
    arrival order, same process, rounds alternated, load 3.4-3.8)."""
    shas: dict[int, Future[bytes]] = {}
    staged: dict[int, Future[Staged]] = {}

    def one(t: T, c: int) -> Path:
        return prepare_one(t, c, staged[c].result() if staged else chunks[c], shas[c].result)

    copies = Counter(c for c, _ in targets)
    jobs: list[tuple[T, int, Future[Path]]] = []
    for c, t in targets:  # chunk by chunk: its hash (and copy), then its replicas
        if c not in shas:
            first = next(_tickets)  # the CPU slots' order: the chunk's copies, then its hash
            for _ in range(copies[c]):
                next(_tickets)
            shas[c] = pool.submit(_ticketed, next(_tickets), partial(_hash, chunks[c]))
            if staging():
                staged[c] = pool.submit(_stage, chunks[c])
            copies[c] = first
        jobs.append((t, c, pool.submit(_ticketed, copies[c], partial(one, t, c))))
        copies[c] += 1
    prepared: list[tuple[T, int, Path]] = []
    failed: list[T] = []
    try:
        for t, c, f in jobs:
            try:
                prepared.append((t, c, f.result()))
            except OSError:
                failed.append(t)
    finally:
        wait([f for _, _, f in jobs])  # nothing reads the staged copies now
        wait(shas.values())
        for st in staged.values():
            if st.exception() is None:
                st.result().release()
    return prepared, failed, {c: f.result() for c, f in shas.items()}


def abort(tmp: Path) -> None:
    """Drop a prepared file (best effort: the device may be gone)."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def read(device: Path, volume: str, chunk: int) -> Replica | None:
    """The verified replica, None if absent; raises Corrupt if it does not verify, OSError if dead.

    The header and the payload are read apart (positioned reads), so the payload arrives as one
    bytes object read straight from the file: no copy of the whole file to slice it from."""
    fd = _open(device, volume, chunk)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, HEADER_SIZE, 0)
        if len(head) < HEADER_SIZE:
            raise Corrupt("short header")
        version, gen, length, sha = _header_fields(head)
        at = HEADER_SIZE if version == 1 else ALIGN
        if size - at != length or (version == 2 and os.pread(fd, ALIGN - HEADER.size, HEADER.size) != _PAD):
            raise Corrupt("bad length or header padding")
        payload = os.pread(fd, length, at) if length else b""
    finally:
        os.close(fd)
    if len(payload) != length:
        raise Corrupt("bad length or header padding")  # shortened while it was read
    if digest(payload) != sha:
        raise Corrupt("checksum mismatch")
    return Replica(gen, payload)


def header_gen(device: Path, volume: str, chunk: int) -> int | None:
    """The generation a replica's header claims (payload not verified), None when absent; raises
    Corrupt when the file holds no replica header, OSError if dead. What a read uses to try the
    replica that should be newest first (`read` then verifies it)."""
    fd = _open(device, volume, chunk)
    if fd is None:
        return None
    try:
        raw = os.pread(fd, HEADER.size, 0)
    finally:
        os.close(fd)
    return int(_header_fields(raw)[1])


def _open(device: Path, volume: str, chunk: int) -> int | None:
    """A replica's file opened for reading, None when absent; OSError when the device is gone."""
    try:
        return os.open(object_path(device, volume, chunk), os.O_RDONLY)
    except FileNotFoundError:
        if not (device / "objects").is_dir():
            raise  # the device itself is gone
        return None


def _header_fields(raw: bytes) -> tuple[int, int, int, bytes]:
    """(version, generation, payload length, checksum) of a replica's header; Corrupt when `raw`
    is not one."""
    if len(raw) < HEADER.size:
        raise Corrupt("short header")
    magic, version, gen, length, sha = HEADER.unpack_from(raw)
    if magic != MAGIC or version not in (1, 2):
        raise Corrupt("bad header")
    return version, gen, length, sha


def remove(device: Path, volume: str, chunk: int) -> None:
    """Delete a replica (absent is fine)."""
    try:
        os.unlink(object_path(device, volume, chunk))
    except FileNotFoundError:
        if not (device / "objects").is_dir():
            raise  # the device itself is gone


def read_gen(device: Path, volume: str, chunk: int) -> int | None:
    """The generation in a replica's header, None when absent or not a replica (the payload is
    not verified: for deciding what to copy, never for serving bytes); OSError if dead."""
    try:
        return header_gen(device, volume, chunk)
    except Corrupt:
        return None
