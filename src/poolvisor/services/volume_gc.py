"""Garbage collection of object files no placement row refers to (`dir` devices).

Bytes can outlive their placement: a write redone after a migration switch leaves what it first
wrote on the source devices; a volume deleted while it was being migrated leaves its pre-copied
objects on the target pool; a crash between a copy and its transaction leaves a copy nobody
points at. The collector removes, on every live byte-holding device of a pool, each object whose
(volume, segment) has no replica row on that device, every empty directory of a volume that is
not in the pool, and prepared (`.tmp`) files older than TMP_AGE_S (a write in flight is seconds
old). A migration collects only the migrated volume's directories (`volumes=`), a scrub all.

Fail closed on identity: a device is collected only when its directory's marker names that very
device row (`sio.owns`). A marker written before markers held ids is adopted (rewritten with the
id) only when no other device's directory is the same directory (inode); otherwise, and for a
missing or foreign marker, the device is skipped and logged. Volume keys are never reused
(migration 0017), so a `v<id>` directory left by a deleted volume is never a live volume's.

A whole-pool collection (a scrub's, `VolumeGarbage.collect`) first scans every directory without
the lock (`survey`), then removes in one transaction holding the pool's placement lock (its
generation moves), like a rebalance batch or a migration switch, only the files the scan found,
each checked again under the lock; a scoped collection scans its directories under the lock.
The operations that write objects ahead of their rows (rebalance, migration and snapshot
pre-copies) check again in their own locked transaction that each copy is still there and copy
it again if not. A volume directory is removed with
`rmdir`, which fails (and keeps it) when a writer created a file in it since the check; a
write that lost its directory to the collector re-creates it (segment_io `_prepare`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import PoolvisorError
from poolvisor.domain.text import check_name
from poolvisor.services.base import ServiceBase
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import StorageDeviceRow, StoragePoolRow, VolumeRow, VolumeSegmentRow

TMP_AGE_S = 3600.0
log = logging.getLogger("poolvisor.volume_gc")


@dataclass(frozen=True)
class GarbageRecord:
    """What a collection removed: object (and stale prepared) files, and their bytes."""

    pool: str
    files: int
    bytes: int


def _volume_id(name: str) -> int | None:
    """The volume id of a device's volume directory (`v<id>`, segment_io.volume_key), else None."""
    return int(name[1:]) if name.startswith("v") and name[1:].isdigit() else None


def _chunk(name: str) -> int | None:
    return int(name) if name.isdigit() else None


def owned(s: Session, d: StorageDeviceRow) -> bool:
    """Whether device `d`'s directory is its own, by its marker (see the module docstring): an
    id-less marker is adopted when no other device is that directory; False (logged) otherwise."""
    path = Path(str(d.path))
    try:
        claimed = sio.device_marker(path)
    except (OSError, ValueError) as e:
        log.warning("device %s (id %d): no readable device marker in %s (%s): not collected", d.name, d.id,
                    path, e)
        return False
    if claimed == d.id:
        return True
    if claimed is not None:
        log.warning("device %s (id %d): the marker in %s names device id %d: not collected", d.name, d.id,
                    path, claimed)
        return False
    others = s.scalars(select(StorageDeviceRow).where(StorageDeviceRow.id != d.id,
                                                      StorageDeviceRow.path.is_not(None)))
    shared = [o.name for o in others if o.path == d.path or sio.same_dir(Path(str(o.path)), path)]
    if shared:
        log.warning("device %s (id %d): its directory %s is also device(s) %s: not collected", d.name, d.id,
                    path, ", ".join(shared))
        return False
    try:
        sio.init_device(path, d.id)
    except OSError as e:
        log.warning("device %s (id %d): cannot rewrite the marker in %s (%s): not collected", d.name, d.id,
                    path, e)
        return False
    log.info("device %s (id %d): adopted the id-less marker in %s", d.name, d.id, path)
    return True


Candidate = tuple[int, str, str]  # (device id, volume directory name, file name)


def _is_garbage(file: str, vid: int, device_id: int, p: StoragePoolRow, in_pool: set[int],
                held: set[tuple[int, int, int]], mtime: float, now: float) -> bool:
    """The collector's one rule for a file in volume directory `v<vid>` of device `device_id`."""
    c = _chunk(file)
    if c is None:  # a prepared file: garbage once no write can still commit it
        return file.endswith(".tmp") and now - mtime > TMP_AGE_S
    return vid not in in_pool or (device_id, vid, c * p.chunk_mib // p.segment_mib) not in held


def _pool_state(s: Session, p: StoragePoolRow, scope: set[int] | None
                ) -> tuple[list[StorageDeviceRow], set[int], set[tuple[int, int, int]]]:
    """The pool's collectable devices (live, with a directory, their own by marker), its volume
    ids, and the (device, volume, segment) replicas placed (only `scope`'s when given)."""
    q_dev = select(StorageDeviceRow).filter_by(pool_id=p.id).order_by(StorageDeviceRow.id)
    devices = [d for d in s.scalars(q_dev) if d.path is not None and d.state != "failed"]
    devices = [d for d in devices if owned(s, d)]
    in_pool = set(s.scalars(select(VolumeRow.id).where(VolumeRow.pool_id == p.id)))
    q = (select(VolumeSegmentRow.device_id, VolumeSegmentRow.volume_id, VolumeSegmentRow.segment)
         .join(VolumeRow, VolumeRow.id == VolumeSegmentRow.volume_id).where(VolumeRow.pool_id == p.id))
    if scope is not None:
        q = q.where(VolumeSegmentRow.volume_id.in_(scope))
    held = {(int(d), int(v), int(g)) for d, v, g in s.execute(q)}
    return devices, in_pool, held


def _volume_dirs(d: StorageDeviceRow, names: Iterable[str] | None) -> Iterator[tuple[str, int, Path]]:
    """Device `d`'s volume directories (only `names` when given) as (name, volume id, path); a
    device that cannot be listed yields none (a device gone: its next I/O marks it failed)."""
    objects = Path(str(d.path)) / "objects"
    if names is None:
        try:
            names = [e.name for e in os.scandir(objects)]
        except OSError:
            return
    for name in names:
        vid = _volume_id(name)
        vdir = objects / name
        if vid is not None and vdir.is_dir() and not vdir.is_symlink():  # else not ours (or absent)
            yield name, vid, vdir


def _files(vdir: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(vdir))
    except OSError:
        return []


def survey(s: Session, p: StoragePoolRow, now: float | None = None) -> list[Candidate]:
    """The whole-pool scan, without the pool's lock: the files garbage as of this read, and the
    directories of volumes not in the pool (file name ""). `collect_in(candidates=...)` checks
    each again under the lock, so a file placed meanwhile stays, and a file created meanwhile is
    not a candidate (the next collection sees it)."""
    now = time.time() if now is None else now
    devices, in_pool, held = _pool_state(s, p, None)
    out: list[Candidate] = []
    for d in devices:
        for name, vid, vdir in _volume_dirs(d, None):
            for f in _files(vdir):
                with contextlib.suppress(OSError):
                    if _is_garbage(f.name, vid, d.id, p, in_pool, held, f.stat().st_mtime, now):
                        out.append((d.id, name, f.name))
            if vid not in in_pool:
                out.append((d.id, name, ""))
    return out


def collect_in(s: Session, p: StoragePoolRow, now: float | None = None,
               volumes: Iterable[int] | None = None,
               candidates: Iterable[Candidate] | None = None) -> tuple[int, int]:
    """Remove the pool's unreferenced object files (the caller holds the pool's lock): all, or
    only in the directories of `volumes` (a migration's volume), or only the `candidates` of a
    `survey`, each checked again here. Returns (files, bytes)."""
    now = time.time() if now is None else now
    scope = None if volumes is None else set(volumes)
    wanted: dict[int, dict[str, set[str]]] | None = None
    if candidates is not None:
        wanted = {}
        for dev, name, file in candidates:
            wanted.setdefault(dev, {}).setdefault(name, set()).add(file)
        if not wanted:
            return 0, 0
        scope = {v for dirs in wanted.values() for n in dirs if (v := _volume_id(n)) is not None}
    devices, in_pool, held = _pool_state(s, p, scope)
    files = nbytes = 0
    for d in devices:
        names: Iterable[str] | None = None  # every directory
        if wanted is not None:
            names = sorted(wanted.get(d.id, {}))
        elif scope is not None:
            names = [sio.volume_key(v) for v in sorted(scope)]
        for name, vid, vdir in _volume_dirs(d, names):
            only = None if wanted is None else wanted[d.id][name]
            for f in _files(vdir):
                if only is not None and f.name not in only:
                    continue
                with contextlib.suppress(OSError):
                    st = f.stat()
                    if _is_garbage(f.name, vid, d.id, p, in_pool, held, st.st_mtime, now):
                        os.unlink(f.path)
                        files, nbytes = files + 1, nbytes + st.st_size
            if vid not in in_pool:
                with contextlib.suppress(OSError):
                    os.rmdir(vdir)  # fails, keeping it, when a writer put a file there since
    return files, nbytes


class VolumeGarbage(ServiceBase):
    """`collect(pool)`: remove a pool's unreferenced object files (see the module docstring)."""

    def collect(self, pool: str, volumes: Iterable[int] | None = None,
                why: str = "collected") -> GarbageRecord:
        """Collect the pool (only `volumes`' directories when given); an event records what went."""
        check_name("storage pool", pool)
        scope = None if volumes is None else sorted(volumes)
        found = None if scope is not None else \
            self._read(lambda s: survey(s, ServiceBase._one(s, StoragePoolRow, "storage pool", pool)))

        def tx(s: Session) -> tuple[int, int]:
            p = ServiceBase._one(s, StoragePoolRow, "storage pool", pool)
            p.generation += 1  # the placement lock: no copy or switch runs meanwhile
            s.flush()
            files, nbytes = collect_in(s, p, volumes=scope, candidates=found)
            if files:
                ServiceBase._event(s, "storage-pool.collected", f"storage-pool/{pool}",
                                   f"storage pool {pool}: {files} unreferenced object file(s) removed "
                                   f"({nbytes} bytes; {why})",
                                   data={"files": files, "bytes": nbytes, "volumes": scope, "why": why})
            return files, nbytes

        files, nbytes = self._write(tx)
        return GarbageRecord(pool, files, nbytes)

    def collect_quietly(self, pool: str, volumes: Iterable[int], why: str) -> GarbageRecord | None:
        """`collect` as a clean-up after another outcome (a migration that switched or failed):
        its own failure (the pool deleted meanwhile, a device gone) is logged, never raised, so it
        neither replaces the original error nor fails what completed; a later scrub collects."""
        try:
            return self.collect(pool, volumes, why)
        except (PoolvisorError, OSError) as e:
            log.warning("collecting storage pool %s after %s failed: %s", pool, why, e)
            return None
