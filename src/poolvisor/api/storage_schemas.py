"""Request and response bodies of the storage API (storage pools, devices, volumes); sizes in MiB.

Bounds live here so the OpenAPI document states them; the services re-check them and check
what depends on stored data (space, failure domains, reachability) with a 404 or 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, StringConstraints

from poolvisor.api.fields import INTEGRAL, Name
from poolvisor.api.schemas import _In, _Out
from poolvisor.domain.text import NAME_PATTERN
from poolvisor.services.volumes import MAX_MIB, MAX_PATH, MAX_REPLICAS

Mib = Annotated[int, Field(ge=1, le=MAX_MIB), INTEGRAL]
Replicas = Annotated[int, Field(ge=1, le=MAX_REPLICAS), INTEGRAL]
DeviceClass = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=NAME_PATTERN)]
DeviceState = Literal["up", "leaving", "failed"]
DevicePath = Annotated[str, StringConstraints(min_length=2, max_length=MAX_PATH, pattern=r"^/[^\x00]*$")]
_CLASS = AliasChoices("klass", "device_class")


class StoragePoolCreate(_In):
    name: Name
    replicas: Replicas = 3
    oversubscription: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)] = Field(
        default=1.0, description="provisioned sizes may reach capacity x this (thin volumes)")
    segment_mib: Annotated[int, Field(ge=1, le=1 << 20), INTEGRAL] = Field(
        default=1024, description="volumes are placed in segments of this size")
    chunk_mib: Annotated[int, Field(ge=1, le=64), INTEGRAL] | None = Field(
        default=None, description="object size of the bytes on `dir` devices; divides segment_mib "
        "(default 4, or the largest divisor of segment_mib below 4)")
    access: Literal["network", "local"] = Field(
        default="network", description="network: every host reaches the pool; local: only hosts "
        "holding one of its devices")
    compute_pool: Name | None = Field(default=None, description="only hosts of this pool reach it")


class DeviceCreate(_In):
    name: Name
    capacity_mib: Mib
    host: Name | None = Field(default=None, description="the host it is local to; none: shared")
    device_class: DeviceClass = Field(default="ssd", description="e.g. ssd, hdd (tiering)")
    domain: Name | None = Field(default=None, description="failure domain; default: its host, else "
                                "its own name")
    path: DevicePath | None = Field(default=None, description="an absolute directory on the server that "
                                    "holds the device's bytes (the `dir` backend); none: metadata only")


class DeviceStateChange(_In):
    state: DeviceState = Field(description="leaving: drained by the next rebalance, then removed; "
                               "failed: its replicas are lost and re-replicated from the survivors")


class DeviceOut(_Out):
    name: str
    pool: str
    host: str | None
    capacity_mib: int
    used_mib: int
    device_class: str = Field(validation_alias=_CLASS)
    domain: str
    state: str
    fragmentation: float = Field(description="1 - largest free run / free space")
    path: str | None = Field(description="directory holding its bytes; null: metadata only")


class SpaceOut(_Out):
    capacity_mib: int = Field(description="raw capacity of the live devices (every replica counts)")
    provisioned_mib: int
    used_mib: int
    free_mib: int
    usable_capacity_mib: int = Field(description="raw / the pool's replicas")
    usable_free_mib: int
    oversubscription: float
    provisioned_ratio: float
    fragmentation: float = Field(description="capacity-weighted over live devices")


class StoragePoolOut(_Out):
    name: str
    replicas: int
    oversubscription: float
    segment_mib: int
    chunk_mib: int = Field(description="object size of the bytes on `dir` devices")
    access: str
    compute_pool: str | None
    volumes: int
    devices: list[DeviceOut]
    space: SpaceOut
    under_replicated: int = Field(description="segments with fewer live replicas than wanted")
    created_at: datetime


class ScrubOut(_Out):
    """A scrub of the pool's bytes: chunks verified, replicas rewritten from the newest valid one
    (corrupt, missing or stale) and their bytes, chunks with no valid replica left, object files
    no replica refers to removed (and their bytes)."""

    pool: str
    chunks: int
    repaired: int
    repaired_bytes: int
    lost: int
    garbage_files: int = 0
    garbage_bytes: int = 0


class RebalanceOut(_Out):
    """What the rebalance would move: segments, replica copies and MiB to copy, replicas to drop,
    segments without a surviving replica; `moves` lists the first few."""

    pool: str
    segments: int
    copies: int
    copy_mib: int
    removed: int
    lost: int
    moves: list[dict[str, Any]]


class VolumeCreate(_In):
    name: Name
    pool: Name = Field(description="storage pool")
    size_mib: Mib
    thin: bool = Field(default=True, description="thin: space taken as written; thick: all at once")
    device_class: DeviceClass | None = Field(default=None, description="keep it on devices of this class")
    replicas: Replicas | None = Field(default=None, description="default: the pool's")
    project: Name | None = Field(default=None, description="members: their project (implicit); admins: "
                                 "defaults to 'default'")


class VolumeResize(_In):
    size_mib: Mib = Field(description="the new size (a volume only grows)")


class VolumeSnapshot(_In):
    name: Name = Field(description="the snapshot's name (a volume of the same project)")


class VolumeMigrate(_In):
    pool: Name = Field(description="the storage pool to move the volume's bytes and placement to")


class VolumeAttach(_In):
    workload: Name = Field(description="a workload of the volume's project, on a host reaching the pool")


class VolumeOut(_Out):
    name: str
    project: str
    pool: str
    size_mib: int
    thin: bool
    device_class: str | None = Field(validation_alias=_CLASS)
    replicas: int
    state: str = Field(description="available, attached, failed (a segment lost every replica), "
                       "snapshot (read-only) or creating (a snapshot whose bytes are being copied)")
    attached_to: str | None
    allocated_mib: int
    segments: int
    live_replicas: int = Field(description="the fewest live replicas of any placed segment")
    extents: int
    devices: dict[str, int] = Field(description="device -> MiB of this volume it holds")
    created_at: datetime | None
    snapshot_of: str | None = Field(description="a snapshot: the volume it was taken of")
