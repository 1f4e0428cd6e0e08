"""Live migration of a volume to another storage pool (issue 11, item 4): a `volume-migrate` task.

Pre-copy, then a short switch. The bytes of every placed segment are first copied, outside any
transaction, from the newest valid source replica to the replicas straw2 places the segment on in
the target pool (the volume stays readable and writable on its source placement meanwhile). The
switch is one transaction holding both pools' placement locks (their generations move): it copies
again only the chunks whose newest source generation is newer than the target's (the writes
acknowledged during the pre-copy), re-points the segment rows to the target devices and the
volume to the target pool, and the source copies are dropped after the commit.

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

from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.domain.text import check_name
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.records import TASK_SUCCEEDED, TaskRecord
from poolvisor.services.tasks import TaskService
from poolvisor.services.volumes import (
    VolumeService,
    _chunks,
    _copy_or_409,
    _PoolState,
    _segment_mib,
    _volume_allocations,
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
class _Plan:
    volume_id: int
    source_pool: str
    segments: dict[int, tuple[range, list[sio.Replica], list[sio.Replica]]]  # seg -> chunks, from, to
    devices: dict[int, list[int]]  # seg -> the target devices (ids) straw2 places it on


def _replica(d: StorageDeviceRow) -> sio.Replica:
    assert d.path is not None
    return sio.Replica(d.id, d.name, Path(d.path))


class VolumeMigration(ServiceBase):
    """`migrate` a volume to another storage pool while it stays in use (module docstring)."""

    def __init__(self, ctx: ServiceContext, volumes: VolumeService, tasks: TaskService) -> None:
        super().__init__(ctx)
        self.volumes = volumes
        self.tasks = tasks

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
        for n, (chunks, sources, targets) in enumerate(plan.segments.values(), 1):
            for t in targets:
                try:
                    copied += sio.copy(key, chunks, sources, t)
                except OSError as e:
                    raise ConflictError(f"device {t.device!r} of storage pool {pool!r} cannot be written "
                                        f"({e.strerror or e}); the volume stays in {plan.source_pool!r}"
                                        ) from None
            if progress is not None:
                progress(n, len(plan.segments))
        garbage: list[tuple[range, Path]] = []

        def switch(s: Session) -> tuple[int, int]:
            garbage.clear()  # a retried transaction starts over
            return self._switch(s, project, name, pool, plan, garbage)

        t0 = time.perf_counter()
        segments, again = self._write(switch)
        switch_s = time.perf_counter() - t0
        for chunks, path in garbage:
            sio.drop(key, chunks, path)
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
        allocated = sum(a for x, a in _volume_allocations(s, src.id) if x.id == v.id)
        sp = st.space(s)
        why = sp.check(v.size_mib * v.replicas, v.thin) or \
            sp.check_write(allocated * v.replicas if v.thin else 0)
        if why:
            raise ConflictError(f"storage pool {pool!r}: {why} (every replica counted)")
        rows = list(st.placement(v, segs, [_segment_mib(dst, v.size_mib, i) for i in segs])) if segs else []
        sources: dict[int, list[sio.Replica]] = {i: [] for i in segs}
        for seg, d in s.execute(select(VolumeSegmentRow.segment, StorageDeviceRow)
                                .join(StorageDeviceRow, StorageDeviceRow.id == VolumeSegmentRow.device_id)
                                .where(VolumeSegmentRow.volume_id == v.id, StorageDeviceRow.state != "failed")
                                .order_by(VolumeSegmentRow.segment, VolumeSegmentRow.replica)).all():
            if d.path is not None:
                sources[seg].append(_replica(d))
        out, devices = {}, {}
        for seg, row in zip(segs, rows, strict=True):
            targets = [st.by_key[int(k)] for k in row]
            devices[seg] = [d.id for d in targets]
            out[seg] = (_chunks(src, v.size_mib, seg), sources[seg],
                        [_replica(d) for d in targets if d.path is not None])
        return _Plan(v.id, src.name, out, devices)

    def _switch(self, s: Session, project: str, name: str, pool: str, pre: _Plan,
                garbage: list[tuple[range, Path]]) -> tuple[int, int]:
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
        for seg, (chunks, sources, targets) in plan.segments.items():
            for t in targets:
                for c in chunks:
                    again += self._catch_up(key, c, sources, t)
            for r in sources:
                garbage.append((chunks, r.path))
            old = pre.segments.get(seg)
            if old is not None:  # a target of the pre-copy that is not one now: drop what it got
                now = {t.device_id for t in targets}
                garbage += [(chunks, t.path) for t in old[2] if t.device_id not in now]
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
    def _catch_up(key: str, c: int, sources: list[sio.Replica], target: sio.Replica) -> int:
        """Copy chunk `c` again when a source holds a newer generation than the target; 1 if it did."""
        if not sio.behind(key, c, sources, target):
            return 0
        _copy_or_409(key, range(c, c + 1), sources, target)
        return 1
