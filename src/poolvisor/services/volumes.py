"""Storage pools, devices and volumes: the control plane of issue 11's storage half.

A volume is cut into segments of its pool's `segment_mib`; each segment has `replicas` replicas on
devices of distinct failure domains, chosen by straw2 (policies/storage/placement.py) over the
pool's live devices weighted by capacity, so a device joining or leaving moves only the replicas
it wins or held. On its device a replica is an extent (contiguous when a free run fits, a chain
otherwise: policies/storage/extents.py); the rows record device and extents per replica.

Placement is a pure function of (segment, live device set), so a rebalance needs no history: it
recomputes the placement and moves only the replicas whose device changed (policies/storage/
rebalance.py). Device add, remove (drain) and fail only change the device's state; the moves run
as a `storage-rebalance` task (services/tasks.py), in batches, each its own transaction, so a
crash leaves a consistent placement and the resumed task continues with what is left. A segment
whose every replica was on failed devices is lost: its volume goes to state `failed`.

Thin volumes take a segment's space when it is first written (`write`); thick ones at creation.
Pools refuse volumes beyond capacity x over-subscription (policies/storage/provisioning.py).
Attach checks that the workload's host reaches the pool (`access`: network, optionally limited to
one compute pool, or local to the hosts holding its devices).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError, PoolvisorError
from poolvisor.domain.text import check_name
from poolvisor.drivers.protocols import Capability, supports
from poolvisor.policies.storage.extents import ExtentMap, NoSpace
from poolvisor.policies.storage.placement import Devices, key64, object_keys, place
from poolvisor.policies.storage.provisioning import PoolSpace
from poolvisor.policies.storage.rebalance import diff
from poolvisor.policies.storage.tiering import demotions
from poolvisor.services import volume_copy as vcopy
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.context import ServiceContext
from poolvisor.services.lifecycle import DETACH_STALE_S
from poolvisor.services.records import DELETING, HOLDING_STATES, TASK_SUCCEEDED, TaskRecord
from poolvisor.services.references import delete_unused, flush_referring
from poolvisor.services.tasks import TaskService
from poolvisor.services.volume_disks import DiskTarget, disk_target, plug, unplug
from poolvisor.services.volume_gc import collect_in, survey
from poolvisor.services.volume_records import (
    DeviceRecord,
    RebalanceRecord,
    ScrubRecord,
    SpaceRecord,
    StoragePoolRecord,
    VolumeRecord,
)
from poolvisor.storage import segment_io as sio
from poolvisor.store.retry import Stale, with_retry
from poolvisor.store.rows import (
    HostRow,
    PoolRow,
    ProjectRow,
    StorageDeviceRow,
    StoragePoolRow,
    VolumeAttachmentRow,
    VolumeRow,
    VolumeSegmentRow,
    WorkloadRow,
)

T = TypeVar("T")
log = logging.getLogger("poolvisor.volumes")
ACCESS = ("network", "local")
DEVICE_STATES = ("up", "leaving", "failed")
# stored volume states; "attached" is reported for an available volume with an attachment (the
# attachment row goes with its workload, so a deleted workload leaves its volumes available)
VOLUME_STATES = ("available", "failed", "snapshot", "creating")  # creating: a snapshot being copied
MAX_REPLICAS = 8
MAX_MIB = 1 << 40  # 1 EiB in MiB: far above any device, far below JSON's exact integers
REBALANCE = "storage-rebalance"
BATCH = 512  # segments moved per transaction (each batch re-plans from the rows: a full scan)
SHOWN_MOVES = 20
MAX_PATH = 1024
MAX_IO = 64 << 20  # bytes per read_data / write_data call (both are held in memory)
PLAN_SEGMENTS = 4096  # a data call reads (and keeps) the whole volume's placement up to this many segments
CREATING_STALE_S = 300.0  # a `creating` snapshot untouched this long has no copier (heartbeat every 10 s)
WRITE_DEADLINE_S = 10.0  # a write re-planned (device died, placement moved) this long, then 409


def _check_int(what: str, v: object, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InvalidInputError(f"{what} must be an integer {lo}..{hi}")
    return v


def _check_class(klass: str) -> str:
    check_name("device class", klass)
    if len(klass) > 16:
        raise InvalidInputError("device class must be at most 16 characters")
    return klass


def extent_map(capacity: int, used: Iterable[list[int]]) -> ExtentMap:
    """A device's free space: its capacity minus the extents its replicas hold."""
    starts, lengths, pos = [], [], 0
    for a, n in sorted((int(x[0]), int(x[1])) for x in used):
        if a > pos:
            starts.append(pos)
            lengths.append(a - pos)
        pos = max(pos, a + n)
    if capacity > pos:
        starts.append(pos)
        lengths.append(capacity - pos)
    m = ExtentMap(capacity)
    m.starts, m.lengths = starts, lengths
    return m


class _PoolState:
    """One pool's devices and their free space, loaded inside a transaction and updated in place."""

    def __init__(self, s: Session, pool: StoragePoolRow):
        self.pool = pool
        self.devices = {d.id: d for d in s.scalars(select(StorageDeviceRow).where(
            StorageDeviceRow.pool_id == pool.id).order_by(StorageDeviceRow.id))}
        held: dict[int, list[list[int]]] = defaultdict(list)
        if self.devices:
            q = select(VolumeSegmentRow.device_id, VolumeSegmentRow.extents).where(
                VolumeSegmentRow.device_id.in_(list(self.devices)))
            for dev, ext in s.execute(q).all():
                held[dev] += ext
        self.maps = {i: extent_map(d.capacity_mib, held[i]) for i, d in self.devices.items()}
        self.by_key = {key64(d.name): d for d in self.devices.values()}

    def live(self, klass: str | None) -> list[StorageDeviceRow]:
        return [d for d in self.devices.values() if d.state == "up" and klass in (None, d.klass)]

    def placement(self, volume: VolumeRow, segments: list[int], sizes: list[int],
                  holders: dict[int, set[int]] | None = None) -> np.ndarray[Any, np.dtype[np.uint64]]:
        """Device keys (segments x replicas) over the live devices of the volume's class.

        Straw2 over capacity weights; a device without room for a segment it does not already
        hold is left out for that segment only (its other replicas keep their devices), so a
        full device never fails a placement the rest of the pool has room for."""
        live = self.check_domains(volume.klass, volume.replicas)
        devs = Devices.of([d.name for d in live], [float(d.capacity_mib) for d in live],
                          [d.domain for d in live])
        keys = object_keys(f"{self.pool.id}/{volume.id}", segments)
        out = place(keys, devs, volume.replicas)
        free = {d.id: self.maps[d.id].free for d in live}
        for j, (need, seg) in enumerate(zip(sizes, segments, strict=True)):
            held = (holders or {}).get(seg, set())
            excluded: set[int] = set()
            while True:
                full = {int(k) for k in out[j] if k and self.by_key[int(k)].id not in held
                        and free[self.by_key[int(k)].id] < need}
                if not full:
                    break
                excluded |= full
                w = np.where(np.isin(devs.keys, np.fromiter(excluded, np.uint64)), 0.0, devs.weights)
                out[j] = place(keys[j:j + 1], Devices(devs.keys, w, devs.domains), volume.replicas)[0]
            if not out[j].all():
                raise ConflictError(f"storage pool {self.pool.name!r}: no {volume.replicas} failure domains "
                                    f"with {need} MiB free on a device")
            for k in out[j]:
                d = self.by_key[int(k)]
                if d.id not in held:
                    free[d.id] -= need
        return out

    def check_domains(self, klass: str | None, replicas: int) -> list[StorageDeviceRow]:
        """The live devices of the class; ConflictError when they span fewer than `replicas` domains."""
        live = self.live(klass)
        domains = {d.domain for d in live}
        if len(domains) < replicas:
            raise ConflictError(
                f"storage pool {self.pool.name!r} has {len(domains)} failure domain(s) with a live "
                f"{klass + ' ' if klass else ''}device; {replicas} replicas need {replicas}")
        return live

    def allocate(self, dev: StorageDeviceRow, mib: int) -> list[list[int]]:
        try:
            return [[a, n] for a, n in self.maps[dev.id].allocate(mib)]
        except NoSpace:
            raise ConflictError(f"device {dev.name!r} of storage pool {self.pool.name!r} is full "
                                f"({self.maps[dev.id].free} MiB free, {mib} MiB needed)") from None

    def release(self, dev_id: int, extents: list[list[int]]) -> None:
        self.maps[dev_id].release([(int(a), int(n)) for a, n in extents])

    def space(self, s: Session) -> PoolSpace:
        cap = sum(d.capacity_mib for d in self.devices.values() if d.state == "up")
        prov = reserved = thin_used = 0
        for v, allocated in _volume_allocations(s, self.pool.id):
            prov += v.size_mib * v.replicas
            if v.thin:
                thin_used += allocated * v.replicas
            else:
                reserved += v.size_mib * v.replicas
        return PoolSpace(cap, prov, reserved, thin_used, self.pool.oversubscription, "MiB")


def _segment_mib(pool: StoragePoolRow, size: int, seg: int) -> int:
    return min(pool.segment_mib, size - seg * pool.segment_mib)


def _check_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path \
            or not 2 <= len(path) <= MAX_PATH:
        raise InvalidInputError(f"device path must be an absolute directory of at most {MAX_PATH} characters")
    return os.path.realpath(path)  # `..` and symlinks resolved: one directory, one spelling


@dataclass(frozen=True)
class _DataPlan:
    """Where a volume's bytes live, read in one transaction: the live replicas of every placed
    segment, and the pool's placement generation it was read at (the write's commit point checks it)."""

    volume_id: int
    pool_id: int
    generation: int  # the pool's placement generation the plan was read at
    size: int  # the volume's size in bytes
    segment_mib: int
    chunk: int  # the pool's object size in bytes (divides a segment)
    replicas: dict[int, list[sio.Replica]]  # placed segment -> its live replicas
    writable: bool  # neither a snapshot nor failed
    covers: range  # the segments the plan read (every one, unless the volume has very many)

    @property
    def key(self) -> str:
        """The volume's directory on a device (segment_io.volume_key)."""
        return sio.volume_key(self.volume_id)

    def segments(self, offset: int, length: int) -> range:
        seg = self.segment_mib * sio.MiB
        return range(offset // seg, (offset + length - 1) // seg + 1)

    def serves(self, offset: int, length: int) -> bool:
        """Whether the range lies in the volume and in the segments this plan read."""
        segs = self.segments(offset, length)
        return offset + length <= self.size and \
            self.covers.start <= segs.start and segs.stop <= self.covers.stop


def _chunks(pool: StoragePoolRow, size_mib: int, seg: int) -> range:
    """The segment's chunks: objects of the pool's `chunk_mib`, which divides `segment_mib` (the
    volume's last chunk may be shorter)."""
    start = seg * pool.segment_mib
    return range(start // pool.chunk_mib, -(-(start + _segment_mib(pool, size_mib, seg)) // pool.chunk_mib))


DEFAULT_CHUNK_MIB = 4  # fewer files and fsyncs per MiB than 1 MiB objects (pools before 0016 keep 1)


def _chunk_mib(segment_mib: int, chunk_mib: int | None) -> int:
    """The pool's object size: the given one (it must divide the segment), else the largest
    divisor of the segment up to DEFAULT_CHUNK_MIB."""
    if chunk_mib is None:
        return max(c for c in range(1, DEFAULT_CHUNK_MIB + 1) if segment_mib % c == 0)
    _check_int("chunk_mib", chunk_mib, 1, 64)
    if segment_mib % chunk_mib:
        raise InvalidInputError(f"chunk_mib ({chunk_mib}) must divide segment_mib ({segment_mib})")
    return chunk_mib


def _copy_or_409(key: str, chunks: Iterable[int], sources: list[sio.Replica], target: sio.Replica,
                 to_key: str | None = None) -> None:
    try:
        sio.copy(key, chunks, sources, target, to_key)
    except OSError as e:
        raise ConflictError(f"device {target.device!r}: its directory cannot be written ({e.strerror or e}); "
                            "set it failed and rebalance") from None


_POOLS = cast(Table, StoragePoolRow.__table__)
_VOLUMES = cast(Table, VolumeRow.__table__)


class _VolumeHead(NamedTuple):
    """A volume's and its pool's columns a data plan needs."""

    id: int
    name: str
    state: str
    size_mib: int
    pool_id: int
    pool: str
    generation: int
    segment_mib: int
    chunk_mib: int


def _writable(v: VolumeRow | _VolumeHead) -> None:
    """Snapshots are read-only; a failed volume lost data."""
    if v.state == "creating":
        raise ConflictError(f"volume {v.name!r} is a snapshot still being copied")
    if v.state == "snapshot":
        raise ConflictError(f"volume {v.name!r} is a snapshot (read-only)")
    if v.state == "failed":
        raise ConflictError(f"volume {v.name!r} lost data (state failed)")


def _stale(v: VolumeRow, now: datetime) -> bool:
    """A `creating` snapshot no copier touched for CREATING_STALE_S (its heartbeat, `last_access`)."""
    return (now - as_utc(v.last_access)).total_seconds() > CREATING_STALE_S


def _clear_leftovers(s: Session, volume_id: int) -> None:
    """A new volume's directory goes from every byte-holding device (any pool), under the pool's
    lock before anything is placed: ids are never reused (0017), but one deleted before that
    upgrade above the largest id could be taken once, and its leftovers must not be read."""
    devs = s.scalars(select(StorageDeviceRow.path).where(StorageDeviceRow.path.is_not(None),
                                                         StorageDeviceRow.state != "failed"))
    sio.drop_volume(sio.volume_key(volume_id), [Path(str(x)) for x in devs])


def _volume_allocations(s: Session, pool_id: int) -> list[tuple[VolumeRow, int]]:
    """Each volume of the pool with its logical MiB that have placed segments."""
    vols = list(s.scalars(select(VolumeRow).where(VolumeRow.pool_id == pool_id)))
    segs: dict[int, set[int]] = defaultdict(set)
    if vols:
        q = select(VolumeSegmentRow.volume_id, VolumeSegmentRow.segment).where(
            VolumeSegmentRow.volume_id.in_([v.id for v in vols]))
        for vid, seg in s.execute(q).all():
            segs[vid].add(seg)
    pool = s.get(StoragePoolRow, pool_id)
    assert pool is not None
    return [(v, sum(_segment_mib(pool, v.size_mib, i) for i in segs[v.id])) for v in vols]


class VolumeService(ServiceBase):
    """Storage pools, devices, volumes and their placement (see the module docstring)."""

    def __init__(self, ctx: ServiceContext, tasks: TaskService) -> None:
        super().__init__(ctx)
        self.tasks = tasks  # rebalances run as tasks (facade.py registers run_rebalance_task)
        # (project, volume) -> the placement the last data call read: reused until a commit point
        # finds the pool's generation moved (then dropped and read again); guarded, never trusted
        self._plans: dict[tuple[str, str], _DataPlan] = {}
        self._copying: set[int] = set()  # snapshots whose bytes this process is copying now

    # ---- pools -------------------------------------------------------------------------------
    def create_pool(self, name: str, *, replicas: int = 3, oversubscription: float = 1.0,
                    segment_mib: int = 1024, access: str = "network",
                    compute_pool: str | None = None, chunk_mib: int | None = None) -> StoragePoolRecord:
        """A pool; `chunk_mib` is the object size its `dir` devices store bytes in (default 4 MiB,
        or the largest divisor of `segment_mib` below that)."""
        check_name("storage pool", name)
        _check_int("replicas", replicas, 1, MAX_REPLICAS)
        _check_int("segment_mib", segment_mib, 1, 1 << 20)
        chunk = _chunk_mib(segment_mib, chunk_mib)
        if isinstance(oversubscription, bool) or not isinstance(oversubscription, int | float) or \
                not 1.0 <= float(oversubscription) <= 100.0:
            raise InvalidInputError("oversubscription must be a number 1..100")
        if access not in ACCESS:
            raise InvalidInputError(f"access must be one of: {', '.join(ACCESS)}")
        if compute_pool is not None:
            check_name("pool", compute_pool)

        def tx(s: Session) -> StoragePoolRecord:
            if s.scalars(select(StoragePoolRow.id).filter_by(name=name)).first() is not None:
                raise ConflictError(f"storage pool {name!r} already exists")
            cp = ServiceBase._one(s, PoolRow, "pool", compute_pool).id if compute_pool else None
            p = StoragePoolRow(name=name, replicas=replicas, oversubscription=float(oversubscription),
                               segment_mib=segment_mib, chunk_mib=chunk, access=access, compute_pool_id=cp,
                               generation=0)
            s.add(p)
            flush_referring(s, f"pool {compute_pool!r} was deleted meanwhile")
            ServiceBase._event(s, "storage-pool.created", f"storage-pool/{name}",
                               f"storage pool {name} created ({replicas} replicas, {access})")
            return self._pool_record(s, p)

        return self._write(tx)

    def list_pools(self) -> list[StoragePoolRecord]:
        return self._read(lambda s: [self._pool_record(s, p) for p in
                                     s.scalars(select(StoragePoolRow).order_by(StoragePoolRow.name))])

    def get_pool(self, name: str) -> StoragePoolRecord:
        check_name("storage pool", name)
        return self._read(lambda s: self._pool_record(s, self._spool(s, name)))

    def delete_pool(self, name: str) -> None:
        check_name("storage pool", name)

        def tx(s: Session) -> None:
            p = self._lock(s, name)
            n = s.scalar(select(func.count()).select_from(VolumeRow).where(VolumeRow.pool_id == p.id))
            if n:
                raise ConflictError(f"storage pool {name!r} still holds {n} volume(s)")
            s.execute(delete(StorageDeviceRow).where(StorageDeviceRow.pool_id == p.id))
            delete_unused(s, p, "storage pool", name)
            ServiceBase._event(s, "storage-pool.deleted", f"storage-pool/{name}",
                               f"storage pool {name} deleted")

        self._write(tx)

    # ---- devices -----------------------------------------------------------------------------
    def add_device(self, pool: str, name: str, capacity_mib: int, *, host: str | None = None,
                   klass: str = "ssd", domain: str | None = None, path: str | None = None) -> DeviceRecord:
        """A new device (domain: the given one, else its host, else its own name). Data moves
        onto it with the next rebalance (`submit_rebalance`). With `path` (an absolute directory,
        created if missing) the device holds the volumes' bytes (the `dir` backend); a pool's
        devices either all have one or none does."""
        check_name("storage pool", pool)
        check_name("device", name)
        _check_int("capacity_mib", capacity_mib, 1, MAX_MIB)
        _check_class(klass)
        if host is not None:
            check_name("host", host)
        if domain is not None:
            check_name("failure domain", domain)
        if path is not None:
            path = _check_path(path)

        def tx(s: Session) -> DeviceRecord:
            p = self._lock(s, pool)
            if s.scalars(select(StorageDeviceRow.id).filter_by(pool_id=p.id, name=name)).first() is not None:
                raise ConflictError(f"device {name!r} already exists in storage pool {pool!r}")
            h = ServiceBase._one(s, HostRow, "host", host) if host is not None else None
            self._check_device_path(s, p, path)
            d = StorageDeviceRow(pool_id=p.id, name=name, host_id=h.id if h else None,
                                 capacity_mib=capacity_mib, path=path,
                                 klass=klass, domain=domain or host or name, state="up")
            s.add(d)
            flush_referring(s, f"host {host!r} was deleted meanwhile")
            if path is not None:  # the marker names the device row (the collector checks it)
                try:
                    sio.init_device(Path(path), d.id)
                except OSError as e:
                    raise ConflictError(f"directory {path!r} cannot hold a device: "
                                        f"{e.strerror or e}") from None
            ServiceBase._event(s, "storage-device.added", f"storage-pool/{pool}/{name}",
                               f"device {name} ({capacity_mib} MiB {klass}) added to storage pool {pool}")
            return self._device_records(s, p, [d])[0]

        return self._write(tx)

    def set_device_state(self, pool: str, name: str, state: str) -> DeviceRecord:
        """up; leaving (the next rebalance drains it, then removes it); failed (its replicas are
        lost: the next rebalance re-replicates from the survivors). A failed device stays failed."""
        check_name("storage pool", pool)
        check_name("device", name)
        if state not in DEVICE_STATES:
            raise InvalidInputError(f"device state must be one of: {', '.join(DEVICE_STATES)}")

        def tx(s: Session) -> DeviceRecord:
            p = self._lock(s, pool)
            d = self._device(s, p, name)
            if d.state == "failed" and state != "failed":
                raise ConflictError(f"device {name!r} failed; remove it and add a new one")
            if d.state != state:
                ServiceBase._event(s, f"storage-device.{state}", f"storage-pool/{pool}/{name}",
                                   f"device {name} of storage pool {pool}: {d.state} -> {state}")
                d.state = state
            return self._device_records(s, p, [d])[0]

        return self._write(tx)

    def delete_device(self, pool: str, name: str) -> None:
        """Drop a device that holds no replica (drain it first: state leaving, then rebalance)."""
        check_name("storage pool", pool)
        check_name("device", name)

        def tx(s: Session) -> None:
            p = self._lock(s, pool)
            d = self._device(s, p, name)
            n = s.scalar(select(func.count()).select_from(VolumeSegmentRow)
                         .where(VolumeSegmentRow.device_id == d.id))
            if n and d.state != "failed":
                raise ConflictError(f"device {name!r} still holds {n} replica(s): "
                                    "set it leaving and rebalance")
            s.execute(delete(VolumeSegmentRow).where(VolumeSegmentRow.device_id == d.id))
            delete_unused(s, d, "device", name)
            ServiceBase._event(s, "storage-device.removed", f"storage-pool/{pool}/{name}",
                               f"device {name} removed from storage pool {pool}")

        self._write(tx)

    # ---- volumes -----------------------------------------------------------------------------
    def create_volume(self, project: str, name: str, pool: str, size_mib: int, *, thin: bool = True,
                      klass: str | None = None, replicas: int | None = None) -> VolumeRecord:
        check_name("project", project)
        check_name("volume", name)
        check_name("storage pool", pool)
        _check_int("size_mib", size_mib, 1, MAX_MIB)
        if not isinstance(thin, bool):
            raise InvalidInputError("thin must be true or false")
        if klass is not None:
            _check_class(klass)
        if replicas is not None:
            _check_int("replicas", replicas, 1, MAX_REPLICAS)

        def tx(s: Session) -> VolumeRecord:
            p = self._lock(s, pool)
            pr = ServiceBase._one(s, ProjectRow, "project", project)
            if s.scalars(select(VolumeRow.id).filter_by(project_id=pr.id, name=name)).first() is not None:
                raise ConflictError(f"volume {name!r} already exists in project {project!r}")
            st = _PoolState(s, p)
            reps = replicas or p.replicas
            st.check_domains(klass, reps)  # thin volumes too: one that can never be written is refused
            why = st.space(s).check(size_mib * reps, thin)
            if why:
                raise ConflictError(f"storage pool {pool!r}: {why} (every replica counted)")
            v = VolumeRow(project_id=pr.id, name=name, pool_id=p.id, size_mib=size_mib, thin=thin,
                          klass=klass,
                          replicas=reps, state="available", last_access=datetime.now(UTC))
            s.add(v)
            s.flush()
            _clear_leftovers(s, v.id)
            if not thin:
                self._place(s, st, v, list(range(self._segments(p, size_mib))))
            ServiceBase._event(s, "volume.created", f"volume/{project}/{name}",
                               f"volume {name} ({size_mib} MiB {'thin' if thin else 'thick'}, "
                               f"{reps} replicas) "
                               f"created in storage pool {pool}", project=project)
            return self._volume_records(s, [v])[0]

        return self._write(tx)

    def list_volumes(self, project: str | None = None) -> list[VolumeRecord]:
        def tx(s: Session) -> list[VolumeRecord]:
            q = select(VolumeRow).order_by(VolumeRow.name)
            if project is not None:
                q = q.where(VolumeRow.project_id == ServiceBase._one(s, ProjectRow, "project", project).id)
            return self._volume_records(s, list(s.scalars(q)))

        return self._read(tx)

    def get_volume(self, project: str, name: str) -> VolumeRecord:
        return self._read(lambda s: self._volume_records(s, [self._volume(s, project, name)])[0])

    def delete_volume(self, project: str, name: str) -> None:
        """Delete an unattached volume; its bytes leave the devices' directories after the commit."""
        def tx(s: Session) -> tuple[str, list[tuple[Path, int]]]:
            v = self._volume(s, project, name)
            self._lock_id(s, v.pool_id)
            if s.get(VolumeAttachmentRow, v.id) is not None:
                raise ConflictError(f"volume {name!r} is attached; detach it first")
            self._plans.pop((project, name), None)
            s.execute(delete(VolumeSegmentRow).where(VolumeSegmentRow.volume_id == v.id))
            delete_unused(s, v, "volume", name)
            ServiceBase._event(s, "volume.deleted", f"volume/{project}/{name}", f"volume {name} deleted",
                               project=project)
            devs = s.execute(select(StorageDeviceRow.path, StorageDeviceRow.id).filter_by(pool_id=v.pool_id)
                             .where(StorageDeviceRow.path.is_not(None))).all()
            return sio.volume_key(v.id), [(Path(str(x)), i) for x, i in devs]

        key, paths = self._write(tx)
        sio.drop_volume(key, [x for x, i in paths if sio.owns(x, i)])  # never through another's directory

    def resize_volume(self, project: str, name: str, size_mib: int) -> VolumeRecord:
        """Online extension: a larger size, existing data untouched; a thick volume's last segment
        grows in place when the space after it is free (else it gets another extent)."""
        _check_int("size_mib", size_mib, 1, MAX_MIB)

        def tx(s: Session) -> VolumeRecord:
            v = self._volume(s, project, name)
            p = self._lock_id(s, v.pool_id)
            _writable(v)
            if size_mib < v.size_mib:
                raise ConflictError(f"volume {name!r} is {v.size_mib} MiB; a volume cannot shrink")
            if size_mib == v.size_mib:
                return self._volume_records(s, [v])[0]
            st = _PoolState(s, p)
            why = st.space(s).check((size_mib - v.size_mib) * v.replicas, v.thin)
            if why:
                raise ConflictError(f"storage pool {p.name!r}: {why} (every replica counted)")
            old_n = self._segments(p, v.size_mib)
            last = old_n - 1
            grow = _segment_mib(p, size_mib, last) - _segment_mib(p, v.size_mib, last)
            if grow > 0:
                for r in s.scalars(select(VolumeSegmentRow).filter_by(volume_id=v.id, segment=last)):
                    dev = st.devices[r.device_id]
                    if dev.state == "failed":
                        continue
                    try:
                        r.extents = [[a, n] for a, n in st.maps[dev.id].extend(
                            [(int(a), int(n)) for a, n in r.extents], grow)]
                    except NoSpace:
                        raise ConflictError(f"device {dev.name!r} is full") from None
            old_size, v.size_mib = v.size_mib, size_mib
            if not v.thin:
                self._place(s, st, v, list(range(old_n, self._segments(p, size_mib))))
            ServiceBase._event(s, "volume.resized", f"volume/{project}/{name}",
                               f"volume {name} resized {old_size} -> {size_mib} MiB", project=project)
            return self._volume_records(s, [v])[0]

        return self._write(tx)

    def write(self, project: str, name: str, offset_mib: int, length_mib: int) -> VolumeRecord:
        """Record a write (the data path's report): a thin volume's untouched segments in the
        range get their replicas now, refused when the pool is physically full."""
        _check_int("offset_mib", offset_mib, 0, MAX_MIB)
        _check_int("length_mib", length_mib, 1, MAX_MIB)

        def tx(s: Session) -> VolumeRecord:
            v = self._volume(s, project, name)
            _writable(v)
            self._allocate_in(s, v, offset_mib, length_mib)
            v.last_access = datetime.now(UTC)
            return self._volume_records(s, [v])[0]

        return self._write(tx)

    def _allocate_in(self, s: Session, v: VolumeRow, offset_mib: int, length_mib: int) -> None:
        """Place the range's segments a thin volume has not written yet (the pool locked)."""
        p = self._lock_id(s, v.pool_id)
        if offset_mib + length_mib > v.size_mib:
            raise InvalidInputError(f"write {offset_mib}+{length_mib} MiB outside volume of "
                                    f"{v.size_mib} MiB")
        first, last = offset_mib // p.segment_mib, (offset_mib + length_mib - 1) // p.segment_mib
        have = set(s.scalars(select(VolumeSegmentRow.segment).filter_by(volume_id=v.id)))
        new = [i for i in range(first, last + 1) if i not in have]
        if new:
            st = _PoolState(s, p)
            why = st.space(s).check_write(sum(_segment_mib(p, v.size_mib, i) for i in new) * v.replicas)
            if why:
                raise ConflictError(f"storage pool {p.name!r}: {why} (every replica counted)")
            self._place(s, st, v, new)

    # ---- data path (devices with a directory) ------------------------------------------------
    def write_data(self, project: str, name: str, offset: int, data: bytes | bytearray | memoryview, *,
                   copy_back: bool = False) -> int:
        """Write bytes at byte `offset` to every live replica of the segments they fall in, as
        checksummed objects of the pool's chunk size on the devices' directories
        (storage/segment_io.py), two-phase;
        returns the bytes acknowledged (all of them).

        The bytes move outside any transaction: the placement is read (or reused from the last
        call) first, the replicas are prepared and committed, and one short transaction is the
        commit point (run once every replica is renamed into place, while their directories'
        fsyncs are in flight; the write returns only when both are done): it checks that the pool's
        placement generation is still the one the bytes were written under (a rebalance,
        migration or device failure since then moved it) and records the access. A moved
        generation or a device that failed an I/O (marked failed here; the next rebalance
        re-replicates) redoes the write on the new placement; 409 if it cannot be acknowledged
        within WRITE_DEADLINE_S. A volume whose bytes live on a host's disk now (attached to a
        guest, the pool keeping bytes) is refused with 409: the detach's copy-back (`copy_back`,
        the only writer then) would overwrite the write."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInputError("data must be bytes")
        view = memoryview(data).cast("B")
        size = self._check_range(offset, len(view))

        def step() -> int:
            plan = self._write_plan(project, name, offset, size, copy_back)
            try:
                acked: list[bool] = []

                def commit_point() -> None:  # while the replicas' directory fsyncs are in flight
                    self.ctx.write_once(lambda s: self._acknowledge(s, plan))
                    acked.append(True)

                dead = sio.write(plan.key, self._write_chunks(plan, name, offset, view), sio.next_gen(),
                                 commit_point)
                if dead:
                    self._write(lambda s: self._fail_devices(s, dead))
                    raise Stale()  # re-plan over the survivors and write again
                if not acked:  # no device failed and the commit point has not run (nothing to sync)
                    commit_point()
            except Stale:
                self._plans.pop((project, name), None)
                raise
            return size

        return with_retry(step, deadline_s=WRITE_DEADLINE_S,
                          conflict=f"volume {name!r}: write not acknowledged (devices kept failing or the "
                          "placement kept moving); retry it")

    def _write_plan(self, project: str, name: str, offset: int, size: int, copy_back: bool = False
                    ) -> _DataPlan:
        """The cached plan when it covers the range; else read it (a write transaction only when
        a thin volume's segment in the range is placed now). A copy-back's plan is never cached
        (it may write a volume other writers may not)."""
        plan = None if copy_back else self._plans.get((project, name))
        if plan is None or not plan.writable or not plan.serves(offset, size) or \
                any(not plan.replicas.get(i) for i in plan.segments(offset, size)):
            plan = self._read(lambda s: self._data_plan(s, project, name, offset, size, write=True,
                                                         copy_back=copy_back))
            if any(not plan.replicas.get(i) for i in plan.segments(offset, size)):
                plan = self._write(lambda s: self._data_plan(s, project, name, offset, size, write=True,
                                                             allocate=True, copy_back=copy_back))
            if not copy_back:
                self._plans[(project, name)] = plan
        return plan

    def _write_chunks(self, plan: _DataPlan, name: str, offset: int, view: memoryview
                      ) -> dict[int, tuple[bytes | memoryview, list[sio.Replica]]]:
        """The objects (chunks of the pool's size) a write replaces, with their replicas: whole
        chunks are slices of the caller's buffer (no copy); a partial one is read, patched and
        written whole (a stored chunk shorter than today's, the last before a resize, is padded)."""
        chunks: dict[int, tuple[bytes | memoryview, list[sio.Replica]]] = {}
        end = offset + len(view)
        seg_bytes, cs = plan.segment_mib * sio.MiB, plan.chunk
        for c in range(offset // cs, -(-end // cs)):
            reps = plan.replicas[c * cs // seg_bytes]
            start = c * cs
            stop = min(start + cs, plan.size)
            a, b = max(offset, start), min(end, stop)
            if a == start and b == stop:
                chunks[c] = (view[a - offset:b - offset], reps)
                continue
            old, bad = sio.read(plan.key, c, reps)  # partial chunk: read-modify-write
            if old is None and len(bad) == len(reps):
                raise ConflictError(f"volume {name!r}: chunk {c} has no valid replica left")
            buf = bytearray(old.data[:stop - start] if old is not None else b"")
            buf += bytes(stop - start - len(buf))
            buf[a - start:b - start] = view[a - offset:b - offset]
            chunks[c] = (bytes(buf), reps)
        return chunks

    def read_data(self, project: str, name: str, offset: int, length: int) -> bytes:
        """Read bytes: each chunk from the newest replica whose checksum verifies (corrupt or
        unreadable replicas are skipped); never-written ranges read as zeros; 409 when every
        replica of a chunk is corrupt or unreadable. The placement is checked again after the
        bytes are read: one that moved meanwhile (its old copies may be gone) reads again."""
        size = self._check_range(offset, length)

        def step() -> bytes:
            plan = self._plans.get((project, name))
            if plan is None or not plan.serves(offset, size):
                plan = self._read(lambda s: self._data_plan(s, project, name, offset, size, write=False))
                self._plans[(project, name)] = plan
            out = self._read_plan(plan, name, offset, size)
            if self._read(lambda s: s.scalar(select(StoragePoolRow.generation)
                                             .where(StoragePoolRow.id == plan.pool_id))) != plan.generation:
                self._plans.pop((project, name), None)
                raise Stale()
            return out

        return with_retry(step, deadline_s=WRITE_DEADLINE_S,
                          conflict=f"volume {name!r}: read kept racing placement changes; retry it")

    @staticmethod
    def _read_plan(plan: _DataPlan, name: str, offset: int, size: int) -> bytes:
        out: list[bytes] = []  # joined once at the end (a read of whole chunks copies each once)
        end = offset + size
        seg_bytes, cs = plan.segment_mib * sio.MiB, plan.chunk
        wanted = [(c, plan.replicas.get(c * cs // seg_bytes, []))
                  for c in range(offset // cs, -(-end // cs))]
        for (c, reps), (rep, bad) in zip(wanted, sio.read_many(plan.key, wanted), strict=True):
            start = c * cs
            stop = min(start + cs, plan.size)
            if rep is None and bad and len(bad) == len(reps):
                raise ConflictError(f"volume {name!r}: chunk {c} has no valid replica left "
                                    f"({', '.join(r.device for r in bad)} corrupt or unreadable)")
            chunk = rep.data if rep is not None else b""
            a, b = max(offset, start) - start, min(end, stop) - start
            piece = chunk if a == 0 and b == len(chunk) else chunk[a:b]
            out.append(piece)
            if len(piece) < b - a:
                out.append(bytes(b - a - len(piece)))  # short (or never written): zeros
        return b"".join(out)

    def scrub(self, pool: str) -> ScrubRecord:
        """Verify every replica of every written chunk of the pool's volumes (checksum and
        generation) and rewrite the corrupt, missing or stale ones from the newest valid replica;
        then remove the object files no replica row refers to (services/volume_gc.py).
        One transaction per volume, holding the pool's placement lock: a write racing a repair
        sees the generation move and redoes itself, so a repair never lands over newer data."""
        check_name("storage pool", pool)
        vids = self._read(lambda s: list(s.scalars(select(VolumeRow.id).where(
            VolumeRow.pool_id == self._spool(s, pool).id).order_by(VolumeRow.id))))
        total = [0, 0, 0, 0]
        for vid in vids:
            got = self._write(lambda s, vid=vid: self._scrub_volume(s, pool, vid))  # type: ignore[misc]
            total = [a + b for a, b in zip(total, got, strict=True)]
        found = self._read(lambda s: survey(s, self._spool(s, pool)))  # unreferenced objects, unlocked
        files, nbytes = self._write(lambda s: collect_in(s, self._lock(s, pool), candidates=found))
        checked, repaired, repaired_bytes, lost = total
        return ScrubRecord(pool, checked, repaired, repaired_bytes, lost, files, nbytes)

    def _scrub_volume(self, s: Session, pool: str, vid: int) -> list[int]:
        p = self._lock(s, pool)
        v = s.get(VolumeRow, vid)
        if v is None:
            return [0, 0, 0, 0]  # deleted meanwhile
        reps: dict[int, list[sio.Replica]] = defaultdict(list)
        for seg, d in s.execute(select(VolumeSegmentRow.segment, StorageDeviceRow)
                                .join(StorageDeviceRow, StorageDeviceRow.id == VolumeSegmentRow.device_id)
                                .where(VolumeSegmentRow.volume_id == vid, StorageDeviceRow.state != "failed")
                                .order_by(VolumeSegmentRow.segment, VolumeSegmentRow.replica)).all():
            if d.path is not None:
                reps[seg].append(sio.Replica(d.id, d.name, Path(d.path)))
        checked = repaired = nbytes = lost = 0
        dead: set[int] = set()
        key = sio.volume_key(vid)
        for seg, where in sorted(reps.items()):
            for c in _chunks(p, v.size_mib, seg):
                found = sio.verify(key, c, where)
                if not found.present:
                    continue  # never written
                checked += 1
                if found.best is None:
                    lost += 1
                    continue
                for r in found.repair:
                    if r.device_id in dead:
                        continue
                    try:
                        sio.copy(key, range(c, c + 1), [found.holder], r)
                    except OSError:  # the device is gone: failed, the next rebalance re-replicates
                        dead.add(r.device_id)
                        self._fail_devices(s, {r.device_id})
                        continue
                    repaired += 1
                    nbytes += len(found.best.data)
        if repaired or lost:
            ServiceBase._event(s, "storage-pool.scrubbed", f"storage-pool/{pool}",
                               f"volume {v.name}: {repaired} replica(s) repaired, {lost} chunk(s) lost",
                               data={"volume": v.name, "repaired": repaired, "lost": lost})
        return [checked, repaired, nbytes, lost]

    @staticmethod
    def _check_range(offset: object, length: object) -> int:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInputError("offset must be an integer >= 0 (bytes)")
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_IO:
            raise InvalidInputError(f"length must be 1 to {MAX_IO} bytes")
        return length

    def _data_plan(self, s: Session, project: str, name: str, offset: int, length: int, *,
                   write: bool, allocate: bool = False, copy_back: bool = False) -> _DataPlan:
        """The volume's placement (every placed segment's live replicas; only the range's when the
        volume has more than PLAN_SEGMENTS segments) after checking the range; `allocate` places a
        thin volume's unplaced segments in the range (the pool locked). Column selects, not ORM
        rows: this is on the path of a write's first call, and ORM statements cost ≈ 3× as much
        to compile on a fresh engine."""
        head = self._head(s, project, name)
        if offset + length > head.size_mib * sio.MiB:
            raise InvalidInputError(f"{'write' if write else 'read'} {offset}+{length} bytes outside volume "
                                    f"{name!r} of {head.size_mib * sio.MiB} bytes")
        first = offset // sio.MiB // head.segment_mib
        last = (offset + length - 1) // sio.MiB // head.segment_mib
        if write:
            _writable(head)
        elif head.state == "creating":
            raise ConflictError(f"volume {name!r} is a snapshot still being copied")
        on_disk = not copy_back and self._on_host_disk(s, head.id)
        if write and on_disk:
            raise ConflictError(f"volume {name!r} is attached: its bytes are on its workload's disk until "
                                "it is detached (a write here would be overwritten); detach it first")
        if allocate:
            v = s.get(VolumeRow, head.id)
            assert v is not None
            first_mib = first * head.segment_mib
            self._allocate_in(s, v, first_mib, min(v.size_mib, (last + 1) * head.segment_mib) - first_mib)
            s.flush()
            head = self._head(s, project, name)  # the generation moved
        covers = range(-(-head.size_mib // head.segment_mib))
        if len(covers) > PLAN_SEGMENTS:
            covers = range(first, last + 1)
        q = (select(VolumeSegmentRow.segment, StorageDeviceRow.id, StorageDeviceRow.name,
                    StorageDeviceRow.path)
             .join(StorageDeviceRow, StorageDeviceRow.id == VolumeSegmentRow.device_id)
             .where(VolumeSegmentRow.volume_id == head.id, StorageDeviceRow.state != "failed",
                    VolumeSegmentRow.segment.between(covers.start, covers.stop - 1))
             .order_by(VolumeSegmentRow.segment, VolumeSegmentRow.replica))
        reps: dict[int, list[sio.Replica]] = defaultdict(list)
        for seg, dev_id, dev, path in s.execute(q).all():
            if path is None:
                raise ConflictError(f"device {dev!r} of storage pool {head.pool!r} has no directory: "
                                    "the pool keeps placement only, not bytes")
            reps[seg].append(sio.Replica(dev_id, dev, Path(path)))
        if allocate:
            lost = [i for i in range(first, last + 1) if not reps.get(i)]
            if lost:
                raise ConflictError(f"volume {name!r}: segment {lost[0]} has no live replica (lost)")
        return _DataPlan(head.id, head.pool_id, head.generation, head.size_mib * sio.MiB, head.segment_mib,
                         head.chunk_mib * sio.MiB, dict(reps),
                         head.state not in ("snapshot", "failed") and not on_disk, covers)

    def _head(self, s: Session, project: str, name: str) -> _VolumeHead:
        """What a data plan needs of the volume and its pool, in one column select (the ORM
        lookup only to raise the right 404)."""
        check_name("project", project)
        check_name("volume", name)
        row = s.execute(select(VolumeRow.id, VolumeRow.name, VolumeRow.state, VolumeRow.size_mib,
                               StoragePoolRow.id, StoragePoolRow.name, StoragePoolRow.generation,
                               StoragePoolRow.segment_mib, StoragePoolRow.chunk_mib)
                        .join(ProjectRow, ProjectRow.id == VolumeRow.project_id)
                        .join(StoragePoolRow, StoragePoolRow.id == VolumeRow.pool_id)
                        .where(ProjectRow.name == project, VolumeRow.name == name)).first()
        if row is None:
            self._volume(s, project, name)  # raises the project's or the volume's NotFoundError
            raise NotFoundError(f"volume {name!r} not found in project {project!r}")
        return _VolumeHead(*row)

    def _on_host_disk(self, s: Session, volume_id: int) -> bool:
        """Whether the volume's bytes live on a host's disk now: attached, on a host whose driver
        plugs disks, in a pool keeping bytes (the detach copies them back over the volume)."""
        if s.get(VolumeAttachmentRow, volume_id) is None:
            return False
        v = s.get(VolumeRow, volume_id)
        t = disk_target(s, v) if v is not None else None
        return t is not None and t.keeps_bytes and \
            supports(self.ctx.drivers.driver_of(t.host), Capability.VOLUME_ATTACH)

    def _copy_back(self, project: str, name: str, offset: int, data: bytes) -> int:
        """The detach's writer: what the guest's disk holds, back into the volume."""
        return self.write_data(project, name, offset, data, copy_back=True)

    def _fail_devices(self, s: Session, dead: set[int]) -> None:
        """Devices whose directory failed an I/O: failed (the next rebalance re-replicates)."""
        for d in s.scalars(select(StorageDeviceRow).where(StorageDeviceRow.id.in_(dead))):
            if d.state != "failed":
                p = self._lock_id(s, d.pool_id)
                d.state = "failed"
                ServiceBase._event(s, "storage-device.failed", f"storage-pool/{p.name}/{d.name}",
                                   f"device {d.name} of storage pool {p.name} failed an I/O: marked failed")

    @staticmethod
    def _acknowledge(s: Session, plan: _DataPlan) -> None:
        """The write's commit point: the placement it wrote to is still the pool's (a guarded
        update, which waits for a rebalance in progress and then sees its new generation), else
        Stale: the write is redone on the new placement."""
        pools, vols = _POOLS, _VOLUMES  # Core updates: no ORM session synchronization
        done = s.execute(update(pools)
                         .where(pools.c.id == plan.pool_id, pools.c.generation == plan.generation)
                         .values(generation=pools.c.generation))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Stale()
        s.execute(update(vols).where(vols.c.id == plan.volume_id).values(last_access=datetime.now(UTC)))

    def snapshot(self, project: str, name: str, snapshot: str) -> VolumeRecord:
        """A read-only full copy of the volume's written segments, as a volume of its own (state
        `snapshot`) placed by straw2 like any volume, its space checked like a new volume's (not
        copy-on-write: the copy takes its own space). With byte-holding devices the bytes are
        copied outside any transaction while the snapshot is `creating`, then one transaction
        holding the pool's lock places the segments the source opened meanwhile, copies what
        changed since and makes it the source as of then (services/volume_copy.py). Any failure
        drops the snapshot; a copier that died leaves it to the repair sweep."""
        check_name("snapshot", snapshot)

        def tx(s: Session) -> tuple[VolumeRecord, int, int]:
            v = self._volume(s, project, name)
            p = self._lock_id(s, v.pool_id)
            if s.scalars(select(VolumeRow.id).filter_by(project_id=v.project_id, name=snapshot)).first():
                raise ConflictError(f"volume {snapshot!r} already exists in project {project!r}")
            if v.state in ("failed", "creating"):
                raise ConflictError(f"volume {name!r} is {v.state}: it cannot be snapshotted")
            segs = sorted(set(s.scalars(select(VolumeSegmentRow.segment).filter_by(volume_id=v.id))))
            st = _PoolState(s, p)
            st.check_domains(v.klass, v.replicas)
            sp = st.space(s)
            written = sum(_segment_mib(p, v.size_mib, i) for i in segs) * v.replicas
            why = sp.check(v.size_mib * v.replicas, v.thin) or sp.check_write(written if v.thin else 0)
            if why:
                raise ConflictError(f"storage pool {p.name!r}: {why} (every replica counted)")
            keeps = any(d.path is not None for d in st.devices.values())
            snap = VolumeRow(project_id=v.project_id, name=snapshot, pool_id=p.id, size_mib=v.size_mib,
                             thin=v.thin, klass=v.klass, replicas=v.replicas,
                             state="creating" if keeps and segs else "snapshot",
                             last_access=datetime.now(UTC), snapshot_of=v.id)
            s.add(snap)
            s.flush()
            _clear_leftovers(s, snap.id)
            self._place(s, st, snap, segs)
            if snap.state == "snapshot":
                self._snapshot_event(s, project, name, snapshot, len(segs))
            return self._volume_records(s, [snap])[0], v.id, snap.id

        rec, src_id, snap_id = self._write(tx)
        if rec.state != "creating":
            return rec

        def finish(s: Session) -> VolumeRecord:
            src, snap = self._snapshot_rows(s, src_id, snap_id, name, snapshot)
            p = self._lock_id(s, snap.pool_id)
            self._place_new_segments(s, p, src, snap)  # segments a thin source placed meanwhile
            final = vcopy.plan(s, p, src, snap, _chunks)
            vcopy.catch_up(final, done)  # what changed meanwhile, and those new segments
            snap.state = "snapshot"
            self._snapshot_event(s, project, name, snapshot, len(final.segments))
            return self._volume_records(s, [snap])[0]

        self._copying.add(snap_id)  # the repair sweep leaves it alone (other processes: the heartbeat)
        try:
            cp = self._read(lambda s: self._snapshot_copy(s, src_id, snap_id, name, snapshot))
            done = vcopy.precopy(cp)  # outside any transaction
            return self._write(finish)
        except Exception:  # any failure, a 409 or not: the snapshot goes, it is never left `creating`
            try:
                self._write(lambda s: self._drop_creating(s, snap_id))
            except PoolvisorError as e:  # the database is away: the repair sweep drops it later
                log.warning("snapshot %s/%s could not be dropped after its copy failed: %s", project,
                            snapshot, e.message)
            raise
        finally:
            self._copying.discard(snap_id)

    def _place_new_segments(self, s: Session, p: StoragePoolRow, src: VolumeRow, snap: VolumeRow) -> None:
        """In the finishing transaction (the pool locked): place for the snapshot the segments the
        thin source placed since its first transaction (a write during the pre-copy into a
        segment never written before), within the snapshot's size, so `catch_up` copies them: a
        write acknowledged before the finish is in the snapshot even when it opened a segment.
        409 when the pool has no room left for them (the snapshot is dropped; retry it)."""
        have = set(s.scalars(select(VolumeSegmentRow.segment).filter_by(volume_id=snap.id)))
        new = sorted(set(s.scalars(select(VolumeSegmentRow.segment).filter_by(volume_id=src.id)
                                   .where(VolumeSegmentRow.segment < self._segments(p, snap.size_mib))))
                     - have)
        if not new:
            return
        st = _PoolState(s, p)
        why = st.space(s).check_write(sum(_segment_mib(p, snap.size_mib, i) for i in new) * snap.replicas)
        if why:
            raise ConflictError(f"storage pool {p.name!r}: {why} (every replica counted) for the segments "
                                f"volume {src.name!r} opened while snapshot {snap.name!r} was being copied")
        self._place(s, st, snap, new)

    def _heartbeat(self, snap_id: int) -> None:
        """While a snapshot's bytes are copied: its `last_access` says a process is still at it
        (the repair sweep drops a `creating` snapshot untouched for CREATING_STALE_S)."""
        self._write(lambda s: s.execute(update(VolumeRow).where(VolumeRow.id == snap_id,
                                                                VolumeRow.state == "creating")
                                        .values(last_access=datetime.now(UTC))))

    def drop_stale_snapshots(self, now: datetime | None = None) -> list[str]:
        """The repair sweep's part: drop the snapshots left `creating` that no process is copying
        (not this one's, and untouched for CREATING_STALE_S: their copier died or stalled)."""
        now = now or datetime.now(UTC)

        def find(s: Session) -> list[tuple[int, str]]:
            return [(v.id, v.name) for v in s.scalars(select(VolumeRow).filter_by(state="creating"))
                    if v.id not in self._copying and _stale(v, now)]

        out = []
        for vid, vname in self._read(find):
            if self._write(lambda s, vid=vid: self._drop_creating(s, vid, now)):  # type: ignore[misc]
                out.append(f"snapshot {vname}: left creating by a copy that stopped; dropped")
        return out

    def _snapshot_copy(self, s: Session, src_id: int, snap_id: int, name: str, snapshot: str
                       ) -> vcopy.SnapshotCopy:
        src, snap = self._snapshot_rows(s, src_id, snap_id, name, snapshot)
        p = s.get(StoragePoolRow, snap.pool_id)
        assert p is not None
        return vcopy.plan(s, p, src, snap, _chunks, lambda: self._heartbeat(snap_id))

    @staticmethod
    def _snapshot_rows(s: Session, src_id: int, snap_id: int, name: str, snapshot: str
                       ) -> tuple[VolumeRow, VolumeRow]:
        """The source and the snapshot being created; 409 when either went or moved meanwhile."""
        src, snap = s.get(VolumeRow, src_id), s.get(VolumeRow, snap_id)
        if snap is None or snap.state != "creating":
            raise ConflictError(f"snapshot {snapshot!r} was deleted while its bytes were being copied")
        if src is None or src.pool_id != snap.pool_id:
            raise ConflictError(f"volume {name!r} was deleted or migrated while snapshot {snapshot!r} was "
                                "being copied; the snapshot was dropped")
        return src, snap

    def _drop_creating(self, s: Session, snap_id: int, stale_at: datetime | None = None) -> bool:
        """A snapshot that could not be finished: its rows go, and the objects copied for it
        (with `stale_at`: only while it is still untouched for CREATING_STALE_S then)."""
        snap = s.get(VolumeRow, snap_id)
        if snap is None or snap.state != "creating":
            return False
        p = self._lock_id(s, snap.pool_id)
        s.refresh(snap)  # as of the lock: a copier's heartbeat or finish may have come first
        if snap.state != "creating" or (stale_at is not None and not _stale(snap, stale_at)):
            return False
        pr = s.get(ProjectRow, snap.project_id)
        project = pr.name if pr is not None else None
        ServiceBase._event(s, "volume.snapshot-dropped", f"volume/{project}/{snap.name}",
                           f"snapshot {snap.name} dropped: its copy did not finish", project=project)
        s.execute(delete(VolumeSegmentRow).where(VolumeSegmentRow.volume_id == snap.id))
        s.delete(snap)
        s.flush()
        collect_in(s, p, volumes=[snap_id])
        return True

    @staticmethod
    def _snapshot_event(s: Session, project: str, name: str, snapshot: str, segments: int) -> None:
        ServiceBase._event(s, "volume.snapshot", f"volume/{project}/{snapshot}",
                           f"snapshot {snapshot} of volume {name} ({segments} segments)", project=project)

    # ---- attachments -------------------------------------------------------------------------
    def attach(self, project: str, name: str, workload: str) -> VolumeRecord:
        """Attach to a workload of the same project whose host reaches the volume's pool."""
        check_name("workload", workload)

        def tx(s: Session) -> VolumeRecord:
            v = self._volume(s, project, name)
            p = self._lock_id(s, v.pool_id)
            w = s.scalars(select(WorkloadRow).filter_by(project_id=v.project_id, name=workload)).first()
            if w is None:
                raise NotFoundError(f"workload {workload!r} not found in project {project!r}")
            att = s.get(VolumeAttachmentRow, v.id)
            if att is not None:
                other = s.get(WorkloadRow, att.workload_id)
                raise ConflictError(f"volume {name!r} is already attached to {other.name if other else '?'}")
            _writable(v)
            if w.host_id is None or w.state not in HOLDING_STATES:
                raise ConflictError(f"workload {workload!r} is not on a host (state {w.state})")
            if w.state == DELETING:  # its delete copies back only the disks attached when it began
                raise ConflictError(f"workload {workload!r} is being deleted")
            self._claim_workload(s, w)
            self._plans.pop((project, name), None)  # writes read the plan again, and are refused
            host = s.get(HostRow, w.host_id)
            assert host is not None
            why = self._unreachable(s, p, host)
            if why:
                raise ConflictError(f"host {host.name!r} of workload {workload!r} cannot reach storage pool "
                                    f"{p.name!r}: {why}")
            s.add(VolumeAttachmentRow(volume_id=v.id, workload_id=w.id))
            flush_referring(s, f"workload {workload!r} was deleted while volume {name!r} was being attached")
            ServiceBase._event(s, "volume.attached", f"volume/{project}/{name}",
                               f"volume {name} attached to {workload} on {host.name}", project=project)
            targets.append(disk_target(s, v))
            return self._volume_records(s, [v])[0]

        targets: list[DiskTarget | None] = []
        rec = self._write(tx)
        t = targets[-1]
        if t is not None:
            try:  # the disk on the host (services/volume_disks.py); refused: no attachment
                plug(self.ctx.drivers, t, self.read_data)
            except PoolvisorError:
                self._write(lambda s: self._forget_attachment(s, project, name, t.workload.key))
                raise
        return rec

    @staticmethod
    def _claim_workload(s: Session, w: WorkloadRow) -> None:
        """A guarded write on the workload's row, in the state just checked: it conflicts with a
        delete's mark (`UPDATE ... SET state = deleting WHERE state = before`), so on PostgreSQL
        one of the two waits for the other and then sees its outcome (an attach after the mark
        sees `deleting`; a mark after the attach sees the attachment and copies its disk back).
        Stale (read again) when the state moved since it was read."""
        done = s.execute(update(WorkloadRow).where(WorkloadRow.id == w.id, WorkloadRow.state == w.state)
                         .values(state=WorkloadRow.state))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Stale()

    def release_disks(self, workload_id: int, state: str) -> None:
        """Before a workload is deleted: its guest stops (gracefully, then hard: what it wrote is
        on its disks, nothing in flight, and no hot-unplug is needed, which a guest still booting
        would not answer), then each attached volume's disk lets go, its bytes back in the volume
        (the attachment itself goes with the workload's row). A copy-back that fails starts the
        guest again when it was running (`state`: the workload's before the delete; best effort)
        and the error refuses the delete."""
        targets = self._read(lambda s: self._disk_targets(s, workload_id))
        if not any(t.keeps_bytes and supports(self.ctx.drivers.driver_of(t.host), Capability.VOLUME_ATTACH)
                   for t in targets):
            return
        host, dw = targets[0].host, targets[0].workload
        lc = self.ctx.drivers.lifecycle(host)
        was_running = state == "running"
        lc.stop(host, dw)
        try:
            for t in targets:
                unplug(self.ctx.drivers, t, self._copy_back)
        except PoolvisorError:
            if was_running:
                with contextlib.suppress(PoolvisorError):
                    lc.start(host, dw)
            raise

    @staticmethod
    def _disk_targets(s: Session, workload_id: int) -> list[DiskTarget]:
        vols = s.scalars(select(VolumeRow)
                         .join(VolumeAttachmentRow, VolumeAttachmentRow.volume_id == VolumeRow.id)
                         .where(VolumeAttachmentRow.workload_id == workload_id).order_by(VolumeRow.id))
        return [t for t in (disk_target(s, v) for v in vols) if t is not None]

    def plug_workload_disks(self, workload_id: int) -> int:
        """Plug every volume attached to the workload as a disk on the host it is on now (HA
        restarted it elsewhere); how many the host's driver plugged."""
        targets = self._read(lambda s: self._disk_targets(s, workload_id))
        return sum(plug(self.ctx.drivers, t, self.read_data) for t in targets)

    def _forget_attachment(self, s: Session, project: str, name: str, key: str) -> None:
        v = self._volume(s, project, name)
        att = s.get(VolumeAttachmentRow, v.id)
        if att is not None:
            s.delete(att)
            ServiceBase._event(s, "volume.detached", f"volume/{project}/{name}",
                               f"volume {name} detached: {key}'s host refused the disk", project=project)

    def detach(self, project: str, name: str) -> VolumeRecord:
        """The host lets go of the disk first and its bytes come back into the volume (the
        guest's writes); a host or a volume that refuses (503, 409) keeps the attachment.

        The attachment is marked `detaching_since` first, in a transaction that conflicts with
        the workload's delete (a guarded write on its row, like attach): a delete that began
        first makes the detach a 409 (the delete copies the disk back itself), and a delete
        after the mark is a 409 until the detach is done (lifecycle.py): never both copying back
        and unplugging one disk. A mark older than DETACH_STALE_S (its process died) is taken over."""
        def begin(s: Session) -> DiskTarget | None:
            v = self._volume(s, project, name)
            att = s.get(VolumeAttachmentRow, v.id)
            if att is None:
                raise ConflictError(f"volume {name!r} is not attached")
            w = s.get(WorkloadRow, att.workload_id)
            if w is not None:
                if w.state == DELETING:
                    raise ConflictError(f"workload {w.name!r} is being deleted: its delete detaches "
                                        f"volume {name!r} and copies its disk back")
                self._claim_workload(s, w)
            now = datetime.now(UTC)
            if att.detaching_since is not None and \
                    (now - as_utc(att.detaching_since)).total_seconds() < DETACH_STALE_S:
                raise ConflictError(f"volume {name!r} is being detached already; retry")
            att.detaching_since = now
            return disk_target(s, v)

        t = self._write(begin)
        if t is not None:
            try:
                unplug(self.ctx.drivers, t, self._copy_back)
            except Exception:
                with contextlib.suppress(PoolvisorError):  # the attachment stays, usable again
                    self._write(lambda s: self._undo_detaching(s, project, name))
                raise

        def tx(s: Session) -> VolumeRecord:
            v = self._volume(s, project, name)
            att = s.get(VolumeAttachmentRow, v.id)
            if att is None:
                raise ConflictError(f"volume {name!r} is not attached")
            s.delete(att)
            ServiceBase._event(s, "volume.detached", f"volume/{project}/{name}", f"volume {name} detached",
                               project=project)
            s.flush()
            return self._volume_records(s, [v])[0]

        return self._write(tx)

    def _undo_detaching(self, s: Session, project: str, name: str) -> None:
        att = s.get(VolumeAttachmentRow, self._volume(s, project, name).id)
        if att is not None:
            att.detaching_since = None

    @staticmethod
    def _unreachable(s: Session, p: StoragePoolRow, host: HostRow) -> str | None:
        """Why `host` cannot reach pool `p`: outside its compute pool, or (local access) holding
        no live device of it; None when it can."""
        if p.compute_pool_id is not None and host.pool_id != p.compute_pool_id:
            cp = s.get(PoolRow, p.compute_pool_id)
            return f"the pool is reachable from the hosts of pool {cp.name if cp else '?'!r} only"
        if p.access == "network":
            return None
        has = s.scalars(select(StorageDeviceRow.id)
                        .filter_by(pool_id=p.id, host_id=host.id, state="up")).first()
        return None if has is not None else "it is local to the hosts holding its devices"

    # ---- rebalance ---------------------------------------------------------------------------
    def plan_rebalance(self, pool: str) -> RebalanceRecord:
        """What a rebalance would move now (a dry run)."""
        check_name("storage pool", pool)
        return self._read(lambda s: self._rebalance_in(s, self._spool(s, pool), apply=False, limit=None))

    def rebalance(self, pool: str, progress: Callable[[RebalanceRecord, int], None] | None = None
                  ) -> RebalanceRecord:
        """Apply the moves, BATCH segments per transaction, until none is left; then drop drained
        devices. `progress(done_so_far, remaining_segments)` after each batch."""
        check_name("storage pool", pool)
        total = RebalanceRecord(pool, 0, 0, 0, 0, 0)
        copies: list[tuple[str, range, list[sio.Replica], list[sio.Replica]]] = []
        planned = self._read(lambda s: self._rebalance_in(s, self._spool(s, pool), apply=False, limit=None,
                                                          collect=copies)).segments
        for key, chunks, sources, targets in copies:  # the pre-copy: outside any transaction
            for t in targets:
                with contextlib.suppress(OSError):  # the batch copies again and says why
                    sio.copy(key, chunks, sources, t)
        garbage: list[tuple[str, range, Path, int]] = []  # replicas moved off live devices: dropped later

        def batch(s: Session) -> RebalanceRecord:
            garbage.clear()  # a retried transaction starts over
            return self._rebalance_in(s, self._lock(s, pool), apply=True, limit=BATCH, garbage=garbage)

        while True:
            step = self._write(batch)
            for key, chunks, path, device_id in garbage:
                if sio.owns(path, device_id):  # never through a directory that is not that device's
                    sio.drop(key, chunks, path)
            total = RebalanceRecord(pool, total.segments + step.segments, total.copies + step.copies,
                                    total.copy_mib + step.copy_mib, total.removed + step.removed,
                                    total.lost + step.lost, (total.moves + step.moves)[:SHOWN_MOVES])
            if progress is not None:
                progress(total, max(0, planned - total.segments))
            if step.segments < BATCH:  # the batch found fewer moves than it may do: none is left
                break
        self._write(lambda s: self._finish_rebalance(s, self._lock(s, pool), total))
        return total

    def submit_rebalance(self, pool: str) -> TaskRecord:
        """Queue a rebalance task (404 at once for an unknown pool)."""
        check_name("storage pool", pool)

        def check(s: Session) -> None:
            self._spool(s, pool)  # 404 at once

        return self.tasks.submit(REBALANCE, None, f"storage-pool/{pool}", {"pool": pool}, check)

    def _finish_rebalance(self, s: Session, p: StoragePoolRow, total: RebalanceRecord) -> None:
        for d in s.scalars(select(StorageDeviceRow).filter_by(pool_id=p.id, state="leaving")):
            held = s.scalars(select(VolumeSegmentRow.id).filter_by(device_id=d.id)).first()
            if held is None:
                s.delete(d)
                ServiceBase._event(s, "storage-device.removed", f"storage-pool/{p.name}/{d.name}",
                                   f"device {d.name} drained and removed from storage pool {p.name}")
        ServiceBase._event(s, "storage-pool.rebalanced", f"storage-pool/{p.name}",
                           f"storage pool {p.name} rebalanced: {total.segments} segments, {total.copies} "
                           f"copies, {total.copy_mib} MiB, {total.lost} lost",
                           data={"segments": total.segments, "copies": total.copies,
                                 "copy_mib": total.copy_mib,
                                 "removed": total.removed, "lost": total.lost})

    def _rebalance_in(self, s: Session, p: StoragePoolRow, *, apply: bool, limit: int | None,
                      garbage: list[tuple[str, range, Path, int]] | None = None,
                      collect: list[tuple[str, range, list[sio.Replica], list[sio.Replica]]] | None = None
                      ) -> RebalanceRecord:
        """The moves a rebalance makes (applied with `apply`); `collect` gets each byte-holding
        move's (volume key, chunks, live sources, new targets) for the pre-copy."""
        st = _PoolState(s, p)
        vols = {v.id: v for v in s.scalars(select(VolumeRow).where(VolumeRow.pool_id == p.id))}
        rows: dict[tuple[int, int], list[VolumeSegmentRow]] = defaultdict(list)
        if vols:
            for r in s.scalars(select(VolumeSegmentRow).where(VolumeSegmentRow.volume_id.in_(list(vols)))
                               .order_by(VolumeSegmentRow.volume_id, VolumeSegmentRow.segment,
                                         VolumeSegmentRow.replica)):
                rows[(r.volume_id, r.segment)].append(r)
        segments = copies = copy_mib = removed = lost = 0
        moves: list[dict[str, object]] = []
        by_vol: dict[int, list[int]] = defaultdict(list)
        for vid, seg in rows:
            by_vol[vid].append(seg)
        for vid, segs in sorted(by_vol.items()):
            v = vols[vid]
            width = max(v.replicas, max(len(rows[(vid, i)]) for i in segs))
            old = np.zeros((len(segs), width), dtype=np.uint64)
            for j, i in enumerate(segs):
                for k, r in enumerate(rows[(vid, i)]):
                    d = st.devices[r.device_id]
                    old[j, k] = key64(d.name) if d.state != "failed" else 0
            new = np.zeros_like(old)
            holders = {i: {r.device_id for r in rows[(vid, i)] if st.devices[r.device_id].state != "failed"}
                       for i in segs}
            sizes = [_segment_mib(p, v.size_mib, i) for i in segs]
            new[:, :v.replicas] = st.placement(v, segs, sizes, holders)
            plan = diff(np.zeros(len(segs), np.uint64), old, new)
            for j, src_row, tgt_row in zip(plan.index, plan.sources, plan.targets, strict=True):
                seg = segs[int(j)]
                have = rows[(vid, seg)]
                alive = [r for r in have if st.devices[r.device_id].state != "failed"]
                mib = _segment_mib(p, v.size_mib, seg)
                targets = [st.by_key[int(k)] for k in tgt_row if k]
                sources = {int(k) for k in src_row if k}
                if limit is not None and segments >= limit:
                    return RebalanceRecord(p.name, segments, copies, copy_mib, removed, lost, moves)
                segments += 1
                if not alive:
                    lost += 1
                copies += len(targets)
                copy_mib += mib * len(targets)
                gone = [r for r in have if st.devices[r.device_id].state == "failed"
                        or key64(st.devices[r.device_id].name) in sources]
                removed += sum(st.devices[r.device_id].state != "failed" for r in gone)
                if len(moves) < SHOWN_MOVES:
                    moves.append({"volume": v.name, "segment": seg, "mib": mib,
                                  "from": sorted(st.devices[r.device_id].name for r in gone),
                                  "to": sorted(d.name for d in targets)})
                if collect is not None:
                    collect.append((sio.volume_key(v.id), _chunks(p, v.size_mib, seg),
                                    [sio.Replica(d.id, d.name, Path(d.path)) for d in
                                     (st.devices[r.device_id] for r in alive) if d.path is not None],
                                    [sio.Replica(d.id, d.name, Path(d.path)) for d in targets
                                     if d.path is not None]))
                if apply:
                    self._move(s, st, v, seg, mib, have, gone, targets, lost_all=not alive,
                               garbage=garbage if garbage is not None else [])
        return RebalanceRecord(p.name, segments, copies, copy_mib, removed, lost, moves)

    def _move(self, s: Session, st: _PoolState, v: VolumeRow, seg: int, mib: int,
              have: list[VolumeSegmentRow],
              gone: list[VolumeSegmentRow], targets: list[StorageDeviceRow], *, lost_all: bool,
              garbage: list[tuple[str, range, Path, int]]) -> None:
        """Re-point the replicas leaving (or lost) to the new devices; new slots for the rest.
        With byte-holding devices, the new devices get the segment's chunks that the pre-copy
        (rebalance, outside the transaction) did not, or that were written since (a source with a
        newer generation), from the newest valid live replica; the old live copies are dropped
        after the commit."""
        key, chunks = sio.volume_key(v.id), _chunks(st.pool, v.size_mib, seg)
        sources = [sio.Replica(d.id, d.name, Path(d.path)) for d in (st.devices[r.device_id] for r in have)
                   if d.state != "failed" and d.path is not None]
        if sources:
            for d in targets:
                if d.path is not None:
                    t = sio.Replica(d.id, d.name, Path(d.path))
                    _copy_or_409(key, [c for c in chunks if sio.behind(key, c, sources, t)], sources, t)
            for r in gone:
                old = st.devices[r.device_id]
                if old.state != "failed" and old.path is not None:
                    garbage.append((key, chunks, Path(old.path), old.id))
        free_slots = iter(sorted(set(range(v.replicas + len(have))) - {r.replica for r in have}))
        for d in targets:
            ext = st.allocate(d, mib)
            if gone:
                r = gone.pop()
                st.release(r.device_id, r.extents)
                r.device_id, r.extents = d.id, ext
            else:
                s.add(VolumeSegmentRow(volume_id=v.id, segment=seg, replica=next(free_slots), device_id=d.id,
                                       extents=ext))
        for r in gone:
            st.release(r.device_id, r.extents)
            s.delete(r)
        if lost_all and v.state != "failed":
            v.state = "failed"
            ServiceBase._event(s, "volume.failed", f"volume/{v.id}",
                               f"volume {v.name}: segment {seg} lost every replica", data={"segment": seg})
        s.flush()

    def run_rebalance_task(self, task_id: int) -> None:
        """The `storage-rebalance` task handler: rebalance, noting progress, then end the task."""
        pool = str(self.tasks.get_task(task_id).params["pool"])

        def progress(done: RebalanceRecord, left: int) -> None:
            frac = done.segments / (done.segments + left) if done.segments + left else 1.0
            self.tasks.task_note(task_id, f"{done.segments} segments moved ({done.copy_mib} MiB), "
                                 f"{left} left", progress=frac,
                                 journal={"segments": done.segments, "copy_mib": done.copy_mib})

        r = self.rebalance(pool, progress)
        self.tasks.end_task(task_id, TASK_SUCCEEDED, result={
            "segments": r.segments, "copies": r.copies, "copy_mib": r.copy_mib, "removed": r.removed,
            "lost": r.lost})

    # ---- tiering -----------------------------------------------------------------------------
    def tier(self, pool: str, classes: list[str], cold_after_s: float,
             now: datetime | None = None) -> list[tuple[str, str, str]]:
        """Demote volumes idle for `cold_after_s` one class slower (classes fastest first), while
        the slower class has room; their data moves on the next rebalance. (project, volume, class)."""
        check_name("storage pool", pool)
        for k in classes:
            _check_class(k)
        now = now or datetime.now(UTC)

        def tx(s: Session) -> list[tuple[str, str, str]]:
            p = self._lock(s, pool)
            st = _PoolState(s, p)
            allocs = [(v, a) for v, a in _volume_allocations(s, p.id) if v.klass in classes]
            free = [sum(st.maps[d.id].free for d in st.live(k)) for k in classes]
            moves = demotions([a * v.replicas for v, a in allocs],
                              [(now - as_utc(v.last_access)).total_seconds() for v, _ in allocs],
                              [classes.index(str(v.klass)) for v, _ in allocs], free, cold_after_s)
            projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
            out = []
            for i, target in moves:
                v = allocs[i][0]
                v.klass = classes[target]
                out.append((projects[v.project_id], v.name, v.klass))
                ServiceBase._event(s, "volume.tiered", f"volume/{projects[v.project_id]}/{v.name}",
                                   f"volume {v.name} demoted to {v.klass}", project=projects[v.project_id])
            return out

        return self._write(tx)

    # ---- internals ---------------------------------------------------------------------------
    @staticmethod
    def _segments(p: StoragePoolRow, size_mib: int) -> int:
        return -(-size_mib // p.segment_mib)

    def _place(self, s: Session, st: _PoolState, v: VolumeRow, segs: list[int]) -> None:
        if not segs:
            return
        rows = st.placement(v, segs, [_segment_mib(st.pool, v.size_mib, i) for i in segs])
        for seg, row in zip(segs, rows, strict=True):
            mib = _segment_mib(st.pool, v.size_mib, seg)
            for k, key in enumerate(row):
                d = st.by_key[int(key)]
                s.add(VolumeSegmentRow(volume_id=v.id, segment=seg, replica=k, device_id=d.id,
                                       extents=st.allocate(d, mib)))
        s.flush()

    @staticmethod
    def _spool(s: Session, name: str) -> StoragePoolRow:
        return ServiceBase._one(s, StoragePoolRow, "storage pool", name)

    def _lock(self, s: Session, name: str) -> StoragePoolRow:
        """The pool, row-locked by bumping its generation (placement changes are serialized)."""
        p = self._spool(s, name)
        p.generation += 1
        s.flush()
        return p

    def _lock_id(self, s: Session, pool_id: int) -> StoragePoolRow:
        p = s.get(StoragePoolRow, pool_id)
        assert p is not None
        p.generation += 1
        s.flush()
        return p

    @staticmethod
    def _device(s: Session, p: StoragePoolRow, name: str) -> StorageDeviceRow:
        d = s.scalars(select(StorageDeviceRow).filter_by(pool_id=p.id, name=name)).first()
        if d is None:
            raise NotFoundError(f"device {name!r} not found in storage pool {p.name!r}")
        return d

    @staticmethod
    def _check_device_path(s: Session, p: StoragePoolRow, path: str | None) -> None:
        """A pool's devices all hold bytes (a directory each, never shared) or none does.

        Never shared, in any pool: the collector deletes what no row of *its* device refers to,
        so two devices on one directory would delete each other's data. The directory (its real
        path) must not be another device's by inode (same st_dev/st_ino, however spelled) or by
        its marker (one naming a device row that still exists)."""
        paths = list(s.scalars(select(StorageDeviceRow.path).filter_by(pool_id=p.id)))
        if paths and (paths[0] is None) != (path is None):
            raise ConflictError(f"the devices of storage pool {p.name!r} "
                                + ("keep placement only: add this one without a path" if path
                                   else "hold bytes in directories: give this one a path"))
        if path is None:
            return
        for other in s.scalars(select(StorageDeviceRow).where(StorageDeviceRow.path.is_not(None))):
            if other.path == path or sio.same_dir(Path(str(other.path)), Path(path)):
                op = s.get(StoragePoolRow, other.pool_id)
                raise ConflictError(f"directory {path!r} is already the device {other.name!r} of "
                                    f"storage pool {op.name if op else '?'!r}")
        try:
            claimed = sio.device_marker(Path(path))
        except (OSError, ValueError):
            claimed = None  # no marker (a new directory), or not ours: init_device writes one
        if claimed is not None and s.get(StorageDeviceRow, claimed) is not None:
            raise ConflictError(f"directory {path!r} is marked as another device's (id {claimed})")

    @staticmethod
    def _volume(s: Session, project: str, name: str) -> VolumeRow:
        check_name("project", project)
        check_name("volume", name)
        pr = ServiceBase._one(s, ProjectRow, "project", project)
        v = s.scalars(select(VolumeRow).filter_by(project_id=pr.id, name=name)).first()
        if v is None:
            raise NotFoundError(f"volume {name!r} not found in project {project!r}")
        return v

    def _pool_record(self, s: Session, p: StoragePoolRow) -> StoragePoolRecord:
        st = _PoolState(s, p)
        sp = st.space(s)
        devs = self._device_records(s, p, list(st.devices.values()), st)
        live = [d for d in st.devices.values() if d.state == "up"]
        cap = sum(d.capacity_mib for d in live)
        frag = sum(st.maps[d.id].fragmentation() * d.capacity_mib for d in live) / cap if cap else 0.0
        nvol = s.scalar(select(func.count()).select_from(VolumeRow).where(VolumeRow.pool_id == p.id)) or 0
        under = 0
        if nvol:
            q = (select(VolumeSegmentRow.volume_id, VolumeSegmentRow.segment, func.count())
                 .join(StorageDeviceRow, StorageDeviceRow.id == VolumeSegmentRow.device_id)
                 .join(VolumeRow, VolumeRow.id == VolumeSegmentRow.volume_id)
                 .where(VolumeRow.pool_id == p.id, StorageDeviceRow.state != "failed")
                 .group_by(VolumeSegmentRow.volume_id, VolumeSegmentRow.segment))
            want = dict(s.execute(select(VolumeRow.id, VolumeRow.replicas)
                                  .where(VolumeRow.pool_id == p.id)).all())
            placed = {(vid, seg): n for vid, seg, n in s.execute(q).all()}
            allseg = set(s.execute(select(VolumeSegmentRow.volume_id, VolumeSegmentRow.segment)
                                   .join(VolumeRow, VolumeRow.id == VolumeSegmentRow.volume_id)
                                   .where(VolumeRow.pool_id == p.id)).all())
            under = sum(placed.get((vid, seg), 0) < want[vid] for vid, seg in allseg)
        cp = s.get(PoolRow, p.compute_pool_id) if p.compute_pool_id is not None else None
        space = SpaceRecord(
            capacity_mib=sp.capacity, provisioned_mib=sp.provisioned, used_mib=sp.used, free_mib=sp.free,
            usable_capacity_mib=sp.capacity // p.replicas, usable_free_mib=sp.free // p.replicas,
            oversubscription=p.oversubscription,
            provisioned_ratio=sp.provisioned / sp.capacity if sp.capacity else 0.0, fragmentation=frag)
        return StoragePoolRecord(p.name, p.replicas, p.oversubscription, p.segment_mib, p.access,
                                 cp.name if cp else None, int(nvol), devs, space, under, as_utc(p.created_at),
                                 p.chunk_mib)

    @staticmethod
    def _device_records(s: Session, p: StoragePoolRow, devs: list[StorageDeviceRow],
                        st: _PoolState | None = None) -> list[DeviceRecord]:
        st = st or _PoolState(s, p)
        hosts = dict(s.execute(select(HostRow.id, HostRow.name)).all())
        out = []
        for d in devs:
            m = st.maps[d.id]
            out.append(DeviceRecord(d.name, p.name, hosts.get(d.host_id) if d.host_id else None,
                                    d.capacity_mib,
                                    d.capacity_mib - m.free, d.klass, d.domain, d.state, m.fragmentation(),
                                    d.path))
        return out

    @staticmethod
    def _volume_records(s: Session, vols: list[VolumeRow]) -> list[VolumeRecord]:
        if not vols:
            return []
        ids = [v.id for v in vols]
        pools = {p.id: p for p in s.scalars(select(StoragePoolRow).where(
            StoragePoolRow.id.in_({v.pool_id for v in vols})))}
        projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
        atts = dict(s.execute(select(VolumeAttachmentRow.volume_id, WorkloadRow.name)
                              .join(WorkloadRow, WorkloadRow.id == VolumeAttachmentRow.workload_id)
                              .where(VolumeAttachmentRow.volume_id.in_(ids))).all())
        parent_ids = {v.snapshot_of for v in vols if v.snapshot_of is not None}
        parents = dict(s.execute(select(VolumeRow.id, VolumeRow.name)
                                 .where(VolumeRow.id.in_(parent_ids))).all()) if parent_ids else {}
        segs: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        extents: dict[int, int] = defaultdict(int)
        held: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        q = (select(VolumeSegmentRow.volume_id, VolumeSegmentRow.segment, VolumeSegmentRow.extents,
                    StorageDeviceRow.name, StorageDeviceRow.state)
             .join(StorageDeviceRow, StorageDeviceRow.id == VolumeSegmentRow.device_id)
             .where(VolumeSegmentRow.volume_id.in_(ids)))
        for vid, seg, ext, dname, dstate in s.execute(q).all():
            segs[vid][seg] += dstate != "failed"
            extents[vid] += len(ext)
            held[vid][dname] += sum(int(n) for _, n in ext)
        out = []
        for v in vols:
            p = pools[v.pool_id]
            mine = segs[v.id]
            attached = atts.get(v.id)
            out.append(VolumeRecord(
                name=v.name, project=projects[v.project_id], pool=p.name, size_mib=v.size_mib, thin=v.thin,
                klass=v.klass, replicas=v.replicas,
                state="attached" if attached is not None and v.state == "available" else v.state,
                attached_to=attached,
                allocated_mib=sum(_segment_mib(p, v.size_mib, i) for i in mine), segments=len(mine),
                live_replicas=min(mine.values()) if mine else 0, extents=extents[v.id],
                devices=dict(sorted(held[v.id].items())), created_at=as_utc(v.created_at),
                snapshot_of=parents.get(v.snapshot_of) if v.snapshot_of is not None else None))
        return out




def storage_violations(s: Session, now: datetime | None = None) -> list[str]:
    """Invariants of the storage rows (for `poolvisor check`): a replica's extents add up to its
    segment and lie on its device; no two extents on a device overlap; a segment's replicas are
    on distinct devices and failure domains; a volume's stored state is known, a snapshot is never
    attached, an attachment names a workload of the volume's project; no snapshot is left
    `creating` without a copier (untouched for CREATING_STALE_S by `now`)."""
    now = now or datetime.now(UTC)
    v: list[str] = []
    pools = {p.id: p for p in s.scalars(select(StoragePoolRow))}
    devs = {d.id: d for d in s.scalars(select(StorageDeviceRow))}
    vols = {x.id: x for x in s.scalars(select(VolumeRow))}
    on_dev: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    seg_devs: dict[tuple[int, int], list[StorageDeviceRow]] = defaultdict(list)
    for r in s.scalars(select(VolumeSegmentRow)):
        vol, d = vols.get(r.volume_id), devs.get(r.device_id)
        if vol is None or d is None:
            v.append(f"segment row {r.id} names a missing volume or device")
            continue
        where = f"volume {vol.name} segment {r.segment} replica {r.replica}"
        if d.pool_id != vol.pool_id:
            v.append(f"{where} is on device {d.name} of another storage pool")
        want = _segment_mib(pools[vol.pool_id], vol.size_mib, r.segment)
        got = sum(int(n) for _, n in r.extents)
        if got != want:
            v.append(f"{where} holds {got} MiB, its segment is {want} MiB")
        for a, n in r.extents:
            if int(a) < 0 or int(n) <= 0 or int(a) + int(n) > d.capacity_mib:
                v.append(f"{where}: extent {a}+{n} outside device {d.name} ({d.capacity_mib} MiB)")
            on_dev[d.id].append((int(a), int(n), where))
        seg_devs[(vol.id, r.segment)].append(d)
    for dev_id, exts in on_dev.items():
        exts.sort()
        for (a0, n0, w0), (a1, _n1, w1) in zip(exts, exts[1:], strict=False):
            if a0 + n0 > a1:
                v.append(f"device {devs[dev_id].name}: {w0} overlaps {w1}")
    for (vid, seg), ds in seg_devs.items():
        live = [d for d in ds if d.state != "failed"]
        if len({d.id for d in ds}) != len(ds) or len({d.domain for d in live}) != len(live):
            v.append(f"volume {vols[vid].name} segment {seg}: replicas share a device or failure domain")
    atts = {a.volume_id: a for a in s.scalars(select(VolumeAttachmentRow))}
    for vid, vol in vols.items():
        att = atts.get(vid)
        if vol.state not in VOLUME_STATES:
            v.append(f"volume {vol.name} has unknown state {vol.state!r}")
        if vol.state == "creating" and _stale(vol, now):
            v.append(f"snapshot {vol.name} is creating but no copy has touched it for "
                     f"{(now - as_utc(vol.last_access)).total_seconds():.0f} s (the repair sweep drops it)")
        if att is not None and vol.state == "snapshot":
            v.append(f"snapshot {vol.name} is attached")
        if att is not None:
            w = s.get(WorkloadRow, att.workload_id)
            if w is None or w.project_id != vol.project_id:
                v.append(f"volume {vol.name} is attached to a workload of another project")
    return v
