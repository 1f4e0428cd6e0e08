"""One replica of one object on one device: a file with a header (generation, length, sha256).

Writes are two-phase: `prepare` writes and fdatasyncs `<name>.<gen>.tmp` (data and the size it
needs to be read back: a new file has no other metadata worth a journal write), `commit` renames
it over the object, and the caller fsyncs the directory once per write. Any OSError means the
device is gone (its directory was removed or renamed, the disk failed): callers mark the device
failed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"PVOB"
HEADER = struct.Struct("<4sHxxQQ32s")
HEADER_SIZE = 64


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


def prepare(device: Path, volume: str, chunk: int, gen: int, data: bytes | memoryview,
            sha: bytes | Callable[[], bytes]) -> Path:
    """Phase 1: write and fdatasync the replica under a temporary name; returns that name.

    `sha` may be a function that waits for the checksum (another thread computing it): the
    payload is written first and the header last, before the one fdatasync, so the hash of a
    chunk overlaps the copy of its bytes into every replica's file."""
    tmp = object_path(device, volume, chunk).with_suffix(f".{gen}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        done = 0
        while done < len(view):  # a short write continues where it stopped
            done += os.pwrite(fd, view[done:], HEADER_SIZE + done)
        digest_ = sha if isinstance(sha, bytes) else sha()
        header = HEADER.pack(MAGIC, 1, gen, len(view), digest_).ljust(HEADER_SIZE, b"\0")
        if os.pwrite(fd, header, 0) != HEADER_SIZE:
            raise OSError(errno.EIO, "short header write")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return tmp


def commit(device: Path, volume: str, chunk: int, tmp: Path) -> None:
    """Phase 2: atomically replace the replica with the prepared file."""
    os.rename(tmp, object_path(device, volume, chunk))


def abort(tmp: Path) -> None:
    """Drop a prepared file (best effort: the device may be gone)."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def read(device: Path, volume: str, chunk: int) -> Replica | None:
    """The verified replica, None if absent; raises Corrupt if it does not verify, OSError if dead."""
    try:
        raw = object_path(device, volume, chunk).read_bytes()
    except FileNotFoundError:
        if not (device / "objects").is_dir():
            raise  # the device itself is gone
        return None
    if len(raw) < HEADER_SIZE:
        raise Corrupt("short header")
    magic, version, gen, length, sha = HEADER.unpack_from(raw)
    payload = memoryview(raw)[HEADER_SIZE:]
    if magic != MAGIC or version != 1 or len(payload) != length:
        raise Corrupt("bad header or length")
    if digest(payload) != sha:
        raise Corrupt("checksum mismatch")
    return Replica(gen, bytes(payload))


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
        with open(object_path(device, volume, chunk), "rb") as f:
            raw = f.read(HEADER.size)
    except FileNotFoundError:
        if not (device / "objects").is_dir():
            raise  # the device itself is gone
        return None
    if len(raw) < HEADER.size:
        return None
    magic, version, gen, _length, _sha = HEADER.unpack_from(raw)
    return int(gen) if magic == MAGIC and version == 1 else None
