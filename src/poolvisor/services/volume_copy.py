"""A snapshot's bytes, copied outside the metadata transaction (like a write or a migration).

The snapshot row and its placement are created first (state `creating`: not readable,
attachable or migratable yet); every written chunk of the source is then copied, outside any
transaction, to the snapshot's replicas, remembering the source generation each copy carries.
The finishing transaction holds the pool's placement lock: it places for the snapshot the
segments a thin source opened since (a write into a segment never written before), copies
again the chunks whose source changed since (a write acknowledged meanwhile), whose copy is gone
or that were never copied (those new segments), and marks the snapshot `snapshot`. The snapshot
is the source as of that transaction, up to the snapshot's own size (a source resized meanwhile
is cut there): every write acknowledged before it is in; one in flight sees the generation move
and is redone on the source. No room left for the new segments is a 409 (the snapshot is
dropped; a retry takes a new one). Bytes the guest of an attached volume holds on its host's
disk are not the volume's until the detach copies them back: a snapshot of an attached volume
is the volume's bytes, not the guest's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import StorageDeviceRow, StoragePoolRow, VolumeRow, VolumeSegmentRow

Done = dict[tuple[int, int], tuple[int | None, ...]]  # (chunk, target device) -> the source gen it holds


@dataclass(frozen=True)
class SnapshotCopy:
    """Where the snapshot's chunks come from and go: the volumes' keys, the layout, and per
    written source segment its chunks, live source replicas and the snapshot's replicas."""

    src_key: str
    dst_key: str
    size: int  # bytes
    chunk: int  # bytes
    segments: list[tuple[range, list[sio.Replica], list[sio.Replica]]]
    heartbeat: Callable[[], None] | None = None  # runs every HEARTBEAT_S of a pre-copy (copier alive)

    def copy(self, c: int, sources: list[sio.Replica], targets: list[sio.Replica]) -> tuple[int | None, ...]:
        """Copy chunk `c` to `targets`; the source generation it carries. OSError: a target died."""
        a = c * self.chunk
        _, gens = sio.copy_assembled(self.src_key, c, a, min(a + self.chunk, self.size), self.chunk,
                                     [(c, sources)], targets, self.dst_key)
        return gens

    def behind(self, c: int, sources: list[sio.Replica], targets: list[sio.Replica], done: Done
               ) -> list[sio.Replica]:
        """The targets whose copy of chunk `c` is not the source's newest (changed since, never
        copied there, or gone)."""
        now = (sio.newest_gen(self.src_key, c, sources),)
        return [t for t in targets
                if done.get((c, t.device_id)) != now or sio.header_gen(self.dst_key, c, t) != now[0]]


def plan(s: Session, p: StoragePoolRow, src: VolumeRow, snap: VolumeRow,
         chunks_of: Callable[[StoragePoolRow, int, int], range],
         heartbeat: Callable[[], None] | None = None) -> SnapshotCopy:
    """Today's sources and targets of every segment the snapshot holds (both in pool `p`)."""
    live = {d.id: d for d in s.scalars(select(StorageDeviceRow).filter_by(pool_id=p.id))
            if d.state != "failed" and d.path is not None}
    where: dict[tuple[int, int], list[sio.Replica]] = defaultdict(list)
    for r in s.scalars(select(VolumeSegmentRow).where(VolumeSegmentRow.volume_id.in_([src.id, snap.id]))
                       .order_by(VolumeSegmentRow.replica)):
        d = live.get(r.device_id)
        if d is not None:
            where[(r.volume_id, r.segment)].append(sio.Replica(d.id, d.name, Path(str(d.path))))
    segs = sorted({seg for vid, seg in where if vid == snap.id})
    # the snapshot's own size: a source resized since is copied only up to what the snapshot holds
    return SnapshotCopy(sio.volume_key(src.id), sio.volume_key(snap.id), snap.size_mib * sio.MiB,
                        p.chunk_mib * sio.MiB,
                        [(chunks_of(p, snap.size_mib, seg), where[(src.id, seg)], where[(snap.id, seg)])
                         for seg in segs], heartbeat)


HEARTBEAT_S = 10.0  # how often a long pre-copy says it is alive (volumes.CREATING_STALE_S)


def precopy(cp: SnapshotCopy) -> Done:
    """Every chunk to every snapshot replica, outside any transaction; what each copy carries.
    The plan's `heartbeat` runs every HEARTBEAT_S while it copies (the snapshot's copier is alive)."""
    done: Done = {}
    beat = time.monotonic()
    for chunks, sources, targets in cp.segments:
        for c in chunks:
            if cp.heartbeat is not None and time.monotonic() - beat > HEARTBEAT_S:
                cp.heartbeat()
                beat = time.monotonic()
            try:
                gens = cp.copy(c, sources, targets)
            except OSError:
                continue  # the finishing transaction copies again and says why
            done.update({(c, t.device_id): gens for t in targets})
    return done


def catch_up(cp: SnapshotCopy, done: Done) -> int:
    """In the finishing transaction: copy again the chunks that are behind; how many."""
    again = 0
    for chunks, sources, targets in cp.segments:
        for c in chunks:
            behind = cp.behind(c, sources, targets, done)
            if not behind:
                continue
            try:
                cp.copy(c, sources, behind)
            except OSError as e:
                raise ConflictError(f"device {behind[0].device!r}: its directory cannot be written "
                                    f"({e.strerror or e}); set it failed and rebalance") from None
            again += 1
    return again
