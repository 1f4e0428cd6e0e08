"""Attached volumes as disks of their workload's guest, through the host driver's VolumeAttach.

`svc.volumes.attach` records the attachment, then plugs the disk on the workload's host when that
host's driver declares VOLUME_ATTACH (libvirt: a raw file in the host's storage pool holding the
volume's bytes, hot-plugged into a running guest; sim: its model); a refused plug removes the
attachment again (the driver's 503/409 is the answer). `detach` unplugs first and forgets the
attachment only when the driver let go. A driver without the capability keeps the store-only
attachment (LXC: nothing to plug). The disk is seeded from the volume's placed segments when the
pool keeps bytes (devices with a directory), else it starts empty; on detach (and when the
workload is deleted) what the disk holds then is written back into the volume, so the guest's
writes are kept (a disk lost with its host is not: its bytes since the attach are gone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.pool import DriverPool
from poolvisor.drivers.protocols import Capability, VolumeSpec, supports
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import (
    HostRow,
    ProjectRow,
    StorageDeviceRow,
    StoragePoolRow,
    VolumeAttachmentRow,
    VolumeRow,
    VolumeSegmentRow,
    WorkloadRow,
)

Reader = Callable[[str, str, int, int], bytes]  # (project, volume, offset, length) -> bytes
READ_PIECE = 16 << 20  # bytes per read of the volume while seeding a disk
WRITE_PIECE = 16 << 20  # bytes per write into the volume while copying a detached disk back


@dataclass(frozen=True)
class DiskTarget:
    """Where an attached volume is a disk: the host, the guest and what seeds it."""

    host: str
    workload: DriverWorkload
    project: str
    volume: str
    size_mib: int
    segment_mib: int
    segments: tuple[int, ...]  # placed segments (their bytes seed the disk); () when no bytes kept
    keeps_bytes: bool = False  # the pool's devices hold bytes: the guest's writes come back on detach

    @property
    def volume_id(self) -> str:
        return f"{self.project}/{self.volume}"


def disk_target(s: Session, v: VolumeRow) -> DiskTarget | None:
    """The disk volume `v` is (or is to be) on its attachment's workload host; None when it is
    not attached or its workload is on no host."""
    att = s.get(VolumeAttachmentRow, v.id)
    w = s.get(WorkloadRow, att.workload_id) if att is not None else None
    if w is None or w.host_id is None:
        return None
    host, proj = s.get(HostRow, w.host_id), s.get(ProjectRow, v.project_id)
    p = s.get(StoragePoolRow, v.pool_id)
    assert host is not None and proj is not None and p is not None
    keeps_bytes = s.scalars(select(StorageDeviceRow.id).filter_by(pool_id=p.id)
                            .where(StorageDeviceRow.path.is_not(None))).first() is not None
    segs = sorted(set(s.scalars(select(VolumeSegmentRow.segment).filter_by(volume_id=v.id)))) \
        if keeps_bytes else []
    dw = DriverWorkload(f"{proj.name}/{w.name}", w.kind, {str(k): float(x) for k, x in w.demand.items()})
    return DiskTarget(host.name, dw, proj.name, v.name, v.size_mib, p.segment_mib, tuple(segs),
                      keeps_bytes and v.state == "available")


def _content(t: DiskTarget, read: Reader) -> Callable[[], Iterator[tuple[int, bytes]]] | None:
    if not t.segments:
        return None

    def pieces() -> Iterator[tuple[int, bytes]]:
        size = t.size_mib * sio.MiB
        for seg in t.segments:
            start = seg * t.segment_mib * sio.MiB
            stop = min(size, start + t.segment_mib * sio.MiB)
            for at in range(start, stop, READ_PIECE):
                n = min(READ_PIECE, stop - at)
                yield at, read(t.project, t.volume, at, n)

    return pieces


def plug(drivers: DriverPool, t: DiskTarget, read: Reader) -> bool:
    """Make the volume a disk of the guest when the host's driver can; True when it did."""
    d = drivers.driver_of(t.host)
    if not supports(d, Capability.VOLUME_ATTACH):
        return False
    spec = VolumeSpec(t.volume_id, size_gib=t.size_mib / 1024, content=_content(t, read))
    drivers.volume_attach(t.host).attach_volume(t.host, t.workload, spec)
    return True


Writer = Callable[[str, str, int, bytes], object]  # (project, volume, offset, data): write_data


def unplug(drivers: DriverPool, t: DiskTarget, write: Writer | None = None) -> None:
    """The host lets go of the disk; with `write`, what the disk holds goes back into the volume
    first (a pool keeping bytes only): every piece, except all-zero ones over segments never
    placed (they read as zeros already, and writing them would take a thin volume's space)."""
    if not supports(drivers.driver_of(t.host), Capability.VOLUME_ATTACH):
        return
    back = None
    if write is not None and t.keeps_bytes:
        placed = set(t.segments)
        seg_bytes = t.segment_mib * sio.MiB

        def back(offset: int, data: bytes) -> None:
            at, end = offset, offset + len(data)
            while at < end:  # piece by piece, never across a segment boundary
                stop = min(end, at + WRITE_PIECE, (at // seg_bytes + 1) * seg_bytes)
                piece = data[at - offset:stop - offset]
                if at // seg_bytes in placed or piece.count(0) != len(piece):
                    write(t.project, t.volume, at, piece)
                at = stop

    drivers.volume_attach(t.host).detach_volume(t.host, t.workload, t.volume_id, back)
