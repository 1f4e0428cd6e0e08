"""Frozen records of the storage use cases (services/volumes.py); sizes in MiB."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class DeviceRecord:
    name: str
    pool: str
    host: str | None  # None: shared (reachable over the network)
    capacity_mib: int
    used_mib: int  # MiB of replicas held
    klass: str
    domain: str
    state: str  # up, leaving, failed
    fragmentation: float  # 1 - largest free run / free
    path: str | None = None  # the directory holding its bytes (`dir` device); None: metadata only


@dataclass(frozen=True)
class SpaceRecord:
    """A pool's space. Raw figures count every replica; `usable_*` divide by the pool's replicas."""

    capacity_mib: int  # raw, live devices (up)
    provisioned_mib: int  # raw: volume sizes x their replicas
    used_mib: int  # raw: replicas held (thick volumes whole, thin ones as written)
    free_mib: int
    usable_capacity_mib: int
    usable_free_mib: int
    oversubscription: float
    provisioned_ratio: float  # provisioned / capacity
    fragmentation: float  # capacity-weighted mean over live devices


@dataclass(frozen=True)
class StoragePoolRecord:
    name: str
    replicas: int
    oversubscription: float
    segment_mib: int
    access: str
    compute_pool: str | None
    volumes: int
    devices: list[DeviceRecord]
    space: SpaceRecord
    under_replicated: int  # segments with fewer live replicas than their volume wants
    created_at: datetime
    chunk_mib: int = 4  # the object size of its bytes on `dir` devices


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    project: str
    pool: str
    size_mib: int
    thin: bool
    klass: str | None
    replicas: int
    state: str  # available, attached, failed (a segment lost every replica), snapshot (read-only)
    attached_to: str | None
    allocated_mib: int  # logical MiB with placed segments (thick: all of it)
    segments: int
    live_replicas: int  # the fewest live replicas of any placed segment (0 with no segment)
    extents: int  # extents over every replica (1 per replica when each is contiguous)
    devices: dict[str, int] = field(default_factory=dict)  # device -> MiB held
    created_at: datetime | None = None
    snapshot_of: str | None = None  # the volume a snapshot was taken of (None once it is deleted)


@dataclass(frozen=True)
class RebalanceRecord:
    """What a rebalance moves (or would): segments whose replica set changes, replica copies and
    MiB to copy, replicas dropped, segments with no surviving replica (lost)."""

    pool: str
    segments: int
    copies: int
    copy_mib: int
    removed: int
    lost: int
    moves: list[dict[str, object]] = field(default_factory=list)  # the first few, for display


@dataclass(frozen=True)
class ScrubRecord:
    """What a scrub of a pool's bytes found: chunks verified, replicas repaired (corrupt, missing
    or stale, rewritten from the newest valid one) and their bytes, chunks with no valid replica."""

    pool: str
    chunks: int
    repaired: int
    repaired_bytes: int
    lost: int
    garbage_files: int = 0  # unreferenced object files removed
    garbage_bytes: int = 0
