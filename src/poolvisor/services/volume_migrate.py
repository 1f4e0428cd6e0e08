"""Live migration of a volume to another storage pool (issue 11, item 4): a `volume-migrate` task.

Pre-copy, then a short switch. The bytes of every placed segment are first copied, outside any
transaction, from the newest valid source replica to the replicas straw2 places the segment on in
the target pool (the volume stays readable and writable on its source placement meanwhile). The
switch is one transaction holding both pools' placement locks (their generations move): it copies
again only the chunks whose newest source generation is newer than the target's (the writes
acknowledged during the pre-copy), re-points the segment rows to the target devices and the
volume to the target pool, and the source copies are dropped after the commit.

The two pools may cut volumes differently (segment and object size: pools created before
revision 0016 keep 1 MiB objects, new ones 4 MiB): each target object is assembled from the
source objects that overlap its bytes, and remembers their generations; the switch copies again
exactly the target objects one of whose source objects changed since.

Writes are blocked briefly at the switch, never lost: a write acknowledged before the switch
began is on the source and the switch's delta copy carries it; one whose commit point comes after
finds the source pool's generation moved and is redone on the target (services/volumes.py,
`write_data`). A read that raced the switch sees the generation moved and reads again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, NotFoundError, PoolvisorError
from poolvisor.domain.text import check_name
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.records import TASK_SUCCEEDED, TaskRecord
from poolvisor.services.tasks import TaskService
from poolvisor.services.volume_gc import VolumeGarbage
from poolvisor.services.volumes import (
    VolumeService,
    _chunks,
    _PoolState,
    _segment_mib,
)
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import (
    HostRow,
    StorageDeviceRow,
    StoragePoolRow,
    VolumeAttachmentRow,
    VolumeSegmentRow,
    WorkloadRow,
)

MIGRATE_VOLUME = "volume-migrate"
PRECOPY_SHARE = 0.9  # task progress reached when the pre-copy is done (the switch is the rest)


@dataclass(frozen=True)
class VolumeMigrationRecord:
    """What a migration did: segments moved, MiB copied before the switch, chunks copied again
    at the switch (written meanwhile) and how long writes were blocked there."""

    volume: str
    project: str
    from_pool: str
    to_pool: str
    segments: int
    precopy_mib: int
    switch_chunks: int
    switch_s: float


@dataclass(frozen=True)
class _Layout:
    """How the volume's bytes are cut in a pool: segment and object (chunk) size, in bytes."""

    segment: int
    chunk: int

    @staticmethod
    def of(p: StoragePoolRow) -> _Layout:
        return _Layout(p.segment_mib * sio.MiB, p.chunk_mib * sio.MiB)


@dataclass(frozen=True)
class _Plan:
    volume_id: int
    source_pool: str
    size: int  # bytes
    src: _Layout
    dst: _Layout
    sources: dict[int, list[sio.Replica]]  # placed source segment -> its live replicas
    segments: dict[int, tuple[range, list[sio.Replica]]]  # target segment -> its chunks, target replicas
    devices: dict[int, list[int]]  # target segment -> the target devices (ids) straw2 places it on
    source_chunks: dict[int, range]  # placed source segment -> its chunks (dropped after the switch)

    def parts(self, c: int) -> list[tuple[int, list[sio.Replica]]]:
        """The source chunks overlapping target chunk `c`, each with its source replicas (none:
        a segment never placed, which reads as zeros)."""
        a = c * self.dst.chunk
        b = min(a + self.dst.chunk, self.size)
        return [(k, self.sources.get(k * self.src.chunk // self.src.segment, []))
                for k in range(a // self.src.chunk, -(-b // self.src.chunk))]

    def copy(self, key: str, c: int, targets: list[sio.Replica]) -> tuple[int, tuple[int | None, ...]]:
        """Assemble target chunk `c` and write it to `targets`; (bytes, its sources' generations)."""
        a = c * self.dst.chunk
        return sio.copy_assembled(key, c, a, min(a + self.dst.chunk, self.size), self.src.chunk,
                                  self.parts(c), targets)

    def signature(self, key: str, c: int) -> tuple[int | None, ...]:
        """The newest generation of each source chunk of target chunk `c` now (header reads)."""
        return tuple(sio.newest_gen(key, k, reps) for k, reps in self.parts(c))


def _replica(d: StorageDeviceRow) -> sio.Replica:
    assert d.path is not None
    return sio.Replica(d.id, d.name, Path(d.path))


class VolumeMigration(ServiceBase):
    """`migrate` a volume to another storage pool while it stays in use (module docstring)."""

    def __init__(self, ctx: ServiceContext, volumes: VolumeService, tasks: TaskService,
                 garbage: VolumeGarbage) -> None:
        super().__init__(ctx)
        self.volumes = volumes
        self.tasks = tasks
        self.garbage = garbage  # collects the objects a failed or raced migration leaves behind

    def submit(self, project: str, name: str, pool: str) -> TaskRecord:
        """Queue the migration (404/409 at once when it cannot start)."""
        check_name("project", project)
        check_name("volume", name)
        check_name("storage pool", pool)

        def check(s: Session) -> None:
            self._plan(s, project, name, pool)

        return self.tasks.submit(MIGRATE_VOLUME, project, f"volume/{project}/{name}",
                                 {"project": project, "volume": name, "pool": pool}, check)

    def run_task(self, task_id: int) -> None:
        """The `volume-migrate` task handler: progress per segment pre-copied, then the switch."""
        p = self.tasks.get_task(task_id).params

        def progress(done: int, total: int) -> None:
            self.tasks.task_note(task_id, f"{done}/{total} segments pre-copied",
                                 progress=PRECOPY_SHARE * done / total if total else PRECOPY_SHARE)

        r = self.migrate(str(p["project"]), str(p["volume"]), str(p["pool"]), progress)
        self.tasks.end_task(task_id, TASK_SUCCEEDED, result={
            "from_pool": r.from_pool, "to_pool": r.to_pool, "segments": r.segments,
            "precopy_mib": r.precopy_mib, "switch_chunks": r.switch_chunks, "switch_s": round(r.switch_s, 4)})

    def migrate(self, project: str, name: str, pool: str,
                progress: Callable[[int, int], None] | None = None) -> VolumeMigrationRecord:
        """Pre-copy every placed segment to its target replicas, then switch (see the module)."""
        check_name("storage pool", pool)
        plan = self._read(lambda s: self._plan(s, project, name, pool))
        key = sio.volume_key(plan.volume_id)
        copied = 0
        done: dict[tuple[int, int], tuple[int | None, ...]] = {}  # (chunk, target device): sources' gens
        for n, (chunks, targets) in enumerate(plan.segments.values(), 1):
            for c in chunks:
                try:
                    nbytes, sig = plan.copy(key, c, targets)
                except OSError as e:
                    raise ConflictError(f"a device of storage pool {pool!r} cannot be written "
                                        f"({e.strerror or e}); the volume stays in {plan.source_pool!r}"
                                        ) from None
                copied += nbytes * len(targets)
                done.update({(c, t.device_id): sig for t in targets})
            if progress is not None:
                progress(n, len(plan.segments))
        garbage: list[tuple[range, Path, int]] = []

        def switch(s: Session) -> tuple[int, int]:
            garbage.clear()  # a retried transaction starts over
            return self._switch(s, project, name, pool, plan, garbage, done)

        t0 = time.perf_counter()
        try:
            segments, again = self._write(switch)
        except PoolvisorError:  # not switched (the volume was deleted, a device failed): the
            # target pool's pre-copied objects of this volume are nobody's (only this volume's:
            # other migrations into the pool keep their pre-copies)
            self.garbage.collect_quietly(pool, [plan.volume_id], f"volume {name} not migrated")
            raise
        switch_s = time.perf_counter() - t0
        for chunks, path, device_id in garbage:
            if sio.owns(path, device_id):  # never through a directory that is not that device's
                sio.drop(key, chunks, path)
        # a write redone on the target after the switch left what it first wrote on the source
        self.garbage.collect_quietly(plan.source_pool, [plan.volume_id], f"volume {name} migrated to {pool}")
        return VolumeMigrationRecord(name, project, plan.source_pool, pool, segments,
                                     -(-copied // sio.MiB), again, switch_s)

    # ---- internals ---------------------------------------------------------------------------
    def _plan(self, s: Session, project: str, name: str, pool: str) -> _Plan:
        """Check the migration can happen and read where each placed segment is and goes."""
        v = VolumeService._volume(s, project, name)
        src = s.get(StoragePoolRow, v.pool_id)
        dst = s.scalars(select(StoragePoolRow).filter_by(name=pool)).first()
        assert src is not None
        if dst is None:
            raise NotFoundError(f"storage pool {pool!r} not found")
        if dst.id == src.id:
            raise ConflictError(f"volume {name!r} is already in storage pool {pool!r}")
        if v.state == "failed":
            raise ConflictError(f"volume {name!r} lost data (state failed): nothing to migrate")
        if v.state == "creating":
            raise ConflictError(f"volume {name!r} is a snapshot still being copied")
        st = _PoolState(s, dst)
        src_paths = {d.path is not None
                     for d in s.scalars(select(StorageDeviceRow).filter_by(pool_id=src.id))}
        dst_paths = {d.path is not None for d in st.devices.values()}
        if src_paths and dst_paths and src_paths != dst_paths:
            raise ConflictError(f"storage pools {src.name!r} and {pool!r} do not both hold bytes "
                                "(devices with a directory): a volume moves between like pools")
        att = s.get(VolumeAttachmentRow, v.id)
        w = s.get(WorkloadRow, att.workload_id) if att is not None else None
        host = s.get(HostRow, w.host_id) if w is not None and w.host_id is not None else None
        if host is not None:
            why = VolumeService._unreachable(s, dst, host)
            if why:
                raise ConflictError(f"volume {name!r} is attached on host {host.name!r}, which cannot reach "
                                    f"storage pool {pool!r}: {why}")
        segs = sorted(set(s.scalars(select(VolumeSegmentRow.segment).filter_by(volume_id=v.id))))
        tsegs = sorted({t for i in segs for t in _overlapping(src, dst, v.size_mib, i)})
        allocated = sum(_segment_mib(dst, v.size_mib, i) for i in tsegs)  # in the target's segments
        sp = st.space(s)
        why = sp.check(v.size_mib * v.replicas, v.thin) or \
            sp.check_write(allocated * v.replicas if v.thin else 0)
        if why:
            raise ConflictError(f"storage pool {pool!r}: {why} (every replica counted)")
        sizes = [_segment_mib(dst, v.size_mib, i) for i in tsegs]
        rows = list(st.placement(v, tsegs, sizes)) if tsegs else []
        sources: dict[int, list[sio.Replica]] = {i: [] for i in segs}
        for seg, d in s.execute(select(VolumeSegmentRow.segment, StorageDeviceRow)
                                .join(StorageDeviceRow, StorageDeviceRow.id == VolumeSegmentRow.device_id)
                                .where(VolumeSegmentRow.volume_id == v.id, StorageDeviceRow.state != "failed")
                                .order_by(VolumeSegmentRow.segment, VolumeSegmentRow.replica)).all():
            if d.path is not None:
                sources[seg].append(_replica(d))
        out, devices = {}, {}
        for seg, row in zip(tsegs, rows, strict=True):
            targets = [st.by_key[int(k)] for k in row]
            devices[seg] = [d.id for d in targets]
            out[seg] = (_chunks(dst, v.size_mib, seg), [_replica(d) for d in targets if d.path is not None])
        return _Plan(v.id, src.name, v.size_mib * sio.MiB, _Layout.of(src), _Layout.of(dst), sources, out,
                     devices, {i: _chunks(src, v.size_mib, i) for i in segs})

    def _switch(self, s: Session, project: str, name: str, pool: str, pre: _Plan,
                garbage: list[tuple[range, Path, int]], done: dict[tuple[int, int], tuple[int | None, ...]]
                ) -> tuple[int, int]:
        """Both pools locked: copy what changed since the pre-copy, re-point the rows, switch."""
        v = VolumeService._volume(s, project, name)
        if v.id != pre.volume_id:
            raise ConflictError(f"volume {name!r} was deleted and re-created meanwhile")
        src = self.volumes._lock_id(s, v.pool_id)
        if src.name != pre.source_pool:
            raise ConflictError(f"volume {name!r} moved to storage pool {src.name!r} meanwhile")
        plan = self._plan(s, project, name, pool)  # the same checks, on today's rows
        dst = self.volumes._lock_id(s, s.scalars(select(StoragePoolRow.id).filter_by(name=pool)).one())
        st = _PoolState(s, dst)
        key = sio.volume_key(v.id)
        again = 0
        for seg, (chunks, targets) in plan.segments.items():
            for c in chunks:
                again += self._catch_up(plan, key, c, targets, done)
            old = pre.segments.get(seg)
            if old is not None:  # a target of the pre-copy that is not one now: drop what it got
                now = {t.device_id for t in targets}
                garbage += [(chunks, t.path, t.device_id) for t in old[1] if t.device_id not in now]
        for seg, sources in plan.sources.items():
            garbage += [(plan.source_chunks[seg], r.path, r.device_id) for r in sources]
        segs = sorted(plan.segments)
        s.execute(delete(VolumeSegmentRow).where(VolumeSegmentRow.volume_id == v.id))
        for seg, ids in plan.devices.items():
            mib = _segment_mib(dst, v.size_mib, seg)
            for k, d in enumerate(st.devices[i] for i in ids):
                s.add(VolumeSegmentRow(volume_id=v.id, segment=seg, replica=k, device_id=d.id,
                                       extents=st.allocate(d, mib)))
        v.pool_id = dst.id
        s.flush()
        ServiceBase._event(s, "volume.migrated", f"volume/{project}/{name}",
                           f"volume {name} migrated from storage pool {src.name} to {pool} "
                           f"({len(segs)} segments, {again} chunk(s) copied again at the switch)",
                           project=project, data={"from": src.name, "to": pool, "segments": len(segs)})
        return len(segs), again


    @staticmethod
    def _catch_up(plan: _Plan, key: str, c: int, targets: list[sio.Replica],
                  done: dict[tuple[int, int], tuple[int | None, ...]]) -> int:
        """Copy target chunk `c` again to the targets whose pre-copy is behind: one of its source
        chunks changed since (a write acknowledged meanwhile), it was never pre-copied there, or
        the copy is gone (the garbage collector removes objects no row points at yet); 1 if it did."""
        sig = plan.signature(key, c)
        present = [g for g in sig if g is not None]
        want = max(present) if present else None  # the generation a current copy carries
        behind = [t for t in targets
                  if done.get((c, t.device_id)) != sig or sio.header_gen(key, c, t) != want]
        if not behind:
            return 0
        try:
            plan.copy(key, c, behind)
        except OSError as e:
            raise ConflictError(f"device {behind[0].device!r} cannot be written ({e.strerror or e}); "
                                "set it failed and rebalance") from None
        return 1


def _overlapping(src: StoragePoolRow, dst: StoragePoolRow, size_mib: int, seg: int) -> range:
    """The target pool's segments that hold bytes of the source pool's segment `seg`."""
    a = seg * src.segment_mib
    b = a + _segment_mib(src, size_mib, seg)
    return range(a // dst.segment_mib, (b - 1) // dst.segment_mib + 1)
