"""Garbage collection of object files no placement row refers to (`dir` devices).

Bytes can outlive their placement: a write redone after a migration switch leaves what it first
wrote on the source devices; a volume deleted while it was being migrated leaves its pre-copied
objects on the target pool; a crash between a copy and its transaction leaves a copy nobody
points at. The collector removes, on every live byte-holding device of a pool, each object whose
(volume, segment) has no replica row on that device, every directory of a volume that is not in
the pool, and prepared (`.tmp`) files older than TMP_AGE_S (a write in flight is seconds old).

It runs in one transaction holding the pool's placement lock (its generation moves), like a
rebalance batch or a migration switch: every operation that writes objects ahead of its rows
(rebalance and migration pre-copies) checks in its own locked transaction that the copy is still
there, so nothing the collector removes is relied upon; a write in flight sees the generation
move and is redone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.text import check_name
from poolvisor.services.base import ServiceBase
from poolvisor.store.rows import StorageDeviceRow, StoragePoolRow, VolumeRow, VolumeSegmentRow

TMP_AGE_S = 3600.0


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


def collect_in(s: Session, p: StoragePoolRow, now: float | None = None) -> tuple[int, int]:
    """Remove the pool's unreferenced object files (the caller holds the pool's lock): (files, bytes)."""
    now = time.time() if now is None else now
    devices = [d for d in s.scalars(select(StorageDeviceRow).filter_by(pool_id=p.id))
               if d.path is not None and d.state != "failed"]
    if not devices:
        return 0, 0
    volumes = set(s.scalars(select(VolumeRow.id).where(VolumeRow.pool_id == p.id)))
    q = select(VolumeSegmentRow.device_id, VolumeSegmentRow.volume_id, VolumeSegmentRow.segment)
    held = {(int(d), int(v), int(g)) for d, v, g in s.execute(
        q.join(VolumeRow, VolumeRow.id == VolumeSegmentRow.volume_id).where(VolumeRow.pool_id == p.id))}
    files = nbytes = 0
    for d in devices:
        objects = Path(str(d.path)) / "objects"
        try:
            entries = list(os.scandir(objects))
        except OSError:
            continue  # a device gone: the next I/O marks it failed
        for vdir in entries:
            vid = _volume_id(vdir.name)
            if vid is None or not vdir.is_dir(follow_symlinks=False):
                continue  # not ours
            with contextlib.suppress(OSError):
                for f in os.scandir(vdir.path):
                    c = _chunk(f.name)
                    if c is None:  # a prepared file: garbage once no write can still commit it
                        drop = f.name.endswith(".tmp") and now - f.stat().st_mtime > TMP_AGE_S
                    else:
                        drop = vid not in volumes or \
                            (d.id, vid, c * p.chunk_mib // p.segment_mib) not in held
                    if drop:
                        size = f.stat().st_size
                        os.unlink(f.path)
                        files, nbytes = files + 1, nbytes + size
                if vid not in volumes and not any(os.scandir(vdir.path)):
                    shutil.rmtree(vdir.path, ignore_errors=True)
    return files, nbytes


class VolumeGarbage(ServiceBase):
    """`collect(pool)`: remove a pool's unreferenced object files (see the module docstring)."""

    def collect(self, pool: str) -> GarbageRecord:
        check_name("storage pool", pool)

        def tx(s: Session) -> tuple[int, int]:
            p = ServiceBase._one(s, StoragePoolRow, "storage pool", pool)
            p.generation += 1  # the placement lock: no copy or switch runs meanwhile
            s.flush()
            return collect_in(s, p)

        files, nbytes = self._write(tx)
        return GarbageRecord(pool, files, nbytes)
