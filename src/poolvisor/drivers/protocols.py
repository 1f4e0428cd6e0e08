"""Capability protocols: what a driver can do on a host, declared rather than probed.

A driver implements `HostDriver` (identity, node info, heartbeat, stats) plus any subset of the
capability protocols below, and lists what it implements in `capabilities`. Services never probe
a driver with hasattr: they call `require(driver, Capability.X, host=...)`, which passes when
the driver declares the capability and otherwise raises `UnsupportedByDriver` (409) naming the
driver and host; the typed accessors (`as_migration(driver, host=h)`) do the same and return
the driver as that protocol.

Host arguments are host *names*, except in migration, which spans two driver instances (two URIs)
and so takes both hosts' `HostBinding`s. A driver instance serves every host bound to its
(driver name, URI) pair; the `DriverPool` (drivers/pool.py) hands services the instance of a host.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, cast, runtime_checkable

from poolvisor.domain.errors import ConflictError
from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload, HostStats

__all__ = [
    "BackupImage", "Balloon", "Capability", "ImageInfo", "as_backup_image",
    "DriverError", "DriverRefusal", "DriverWorkload", "Fencing", "HostBinding",
    "HostDriver",
    "HostInfo", "HostStats", "Lifecycle", "Migration", "MigrationHandle", "MigrationProgress",
    "MigrationState", "NicAttach", "NicSpec", "SnapshotInfo", "Snapshots", "UnsupportedByDriver",
    "GuestMemory", "VolumeAttach", "VolumeSpec", "WorkloadSample", "WorkloadStats", "as_balloon",
    "as_fencing",
    "Power", "as_power", "as_lifecycle", "as_migration", "as_nic_attach", "as_snapshots", "as_volume_attach",
    "as_workload_stats", "require", "supports",
]


class Capability(enum.StrEnum):
    LIFECYCLE = "lifecycle"          # create/start/stop/suspend/resume/delete/exists
    MIGRATION = "migration"          # start_migration -> MigrationHandle (progress, abort, wait)
    SNAPSHOTS = "snapshots"          # snapshot_create/list/delete/restore
    STATS = "stats"                  # workload_stats: per-workload CPU and memory samples
    BALLOON = "balloon"              # set_memory of a running guest
    VOLUME_ATTACH = "volume_attach"  # attach_volume/detach_volume
    NIC_ATTACH = "nic_attach"        # attach_nic/detach_nic
    HOST_INFO = "host_info"          # host_info reports real capacity (not only what it was told)
    FENCE = "fence"                  # fence/unfence: destroy every guest and refuse new ones
    POWER = "power"                  # power_on/power_off/power_state of an empty host (DPM)
    BACKUP_IMAGE = "backup_image"    # export_image/import_image: a guest's disk and memory as bytes
    SHARES = "shares"                # a contended host is shared by policies/shares.grant; workload_stats
    #                                  reports each guest's `granted` (the sim driver)


_VERBS = {
    Capability.LIFECYCLE: "run workloads", Capability.MIGRATION: "migrate",
    Capability.SNAPSHOTS: "take snapshots", Capability.STATS: "report per-workload stats",
    Capability.BALLOON: "resize guest memory", Capability.VOLUME_ATTACH: "attach volumes",
    Capability.NIC_ATTACH: "attach NICs", Capability.HOST_INFO: "report host capacity",
    Capability.FENCE: "fence hosts", Capability.POWER: "power hosts on and off",
    Capability.BACKUP_IMAGE: "export or import backup images",
    Capability.SHARES: "share a contended host by reservations, limits and shares",
}


class UnsupportedByDriver(ConflictError):
    """The host's driver does not declare the capability the operation needs."""

    code = "unsupported_by_driver"


# ---- values ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostBinding:
    """Which driver runs a host and where to reach it (the host row's driver, uri and capacity)."""

    name: str
    driver: str = "sim"
    uri: str = ""
    capacity: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HostInfo:
    """The node as it reports itself: capacity in poolvisor's resource names (vcpu, memory_mib...)."""

    name: str
    capacity: dict[str, float]
    hypervisor: str = ""             # "sim", "QEMU", "LXC"...
    version: str = ""
    uuid: str | None = None
    cpu_model: str = ""


@dataclass(frozen=True)
class WorkloadSample:
    """One measurement of a workload on its host; `cpu_util` is in [0, 1] of its vCPUs."""

    key: str
    state: str                       # driver-side: running, stopped, suspended...
    cpu_util: float
    memory_used_mb: float
    memory_mb: float = 0.0           # configured / current balloon size
    cpu_time_s: float | None = None  # cumulative, when the hypervisor reports it
    # what the host grants it per resource now (policies/shares.py: reservation, then shares up to
    # its limit when the host is short); empty when the driver does not model contention
    granted: dict[str, float] = field(default_factory=dict)
    # what it asks for per resource now (its demand capped by its limit): granted < wanted = contention
    wanted: dict[str, float] = field(default_factory=dict)


class MigrationState(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class MigrationProgress:
    state: MigrationState
    fraction: float = 0.0            # 0..1 of the data to move
    bytes_total: int = 0
    bytes_done: int = 0
    downtime_ms: float | None = None  # known once completed (live: the stop-and-copy pause)
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.state is not MigrationState.RUNNING


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    created_at: float                # unix seconds, driver clock
    state: str = ""                  # workload state captured (running, stopped...)
    size_bytes: int = 0


@dataclass(frozen=True)
class ImageInfo:
    """A backup image as written or read: the guest state it holds (what a restore returns the
    workload to), its length in bytes and the SHA-256 of those bytes (hex)."""

    state: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class VolumeSpec:
    """A block device to attach: `path` is driver-specific (file, libvirt vol key, LV...)."""

    id: str
    path: str = ""
    size_gib: float = 0.0
    bus: str = "virtio"
    read_only: bool = False
    # the volume's bytes as (offset, data) pieces, read when the disk is made (never-written
    # ranges are left out: zeros); None: the disk starts empty
    content: Callable[[], Iterable[tuple[int, bytes]]] | None = field(default=None, compare=False)


CopyBack = Callable[[int, bytes], None]  # (offset, bytes) of a detached disk, into its volume


@dataclass(frozen=True)
class NicSpec:
    mac: str
    network: str = ""                # poolvisor's "project/network"
    bridge: str = ""
    model: str = "virtio"
    address: str = ""                # the address poolvisor allocated, "10.0.0.5/24" ("" = none)
    gateway: str = ""                # the network's gateway (a poolvisor router), "" = none
    dhcp: str = ""                   # the hosts' DHCP server address, "10.0.0.254" ("" = no DHCP)


# ---- protocols -------------------------------------------------------------------------------
@runtime_checkable
class HostDriver(Protocol):
    """What every driver does: bind hosts, describe them, tell whether they are alive."""

    name: str
    capabilities: frozenset[Capability]

    def connect(self, host: HostBinding) -> None:
        """Start serving `host` (idempotent); raises DriverError when the node cannot be reached."""

    def disconnect(self, host: str) -> None: ...

    def host_info(self, host: str) -> HostInfo: ...

    def heartbeat(self, host: str) -> bool: ...

    def stats(self, host: str) -> HostStats: ...


@runtime_checkable
class Lifecycle(Protocol):
    def create(self, host: str, workload: DriverWorkload) -> None: ...

    def start(self, host: str, workload: DriverWorkload) -> None: ...

    def stop(self, host: str, workload: DriverWorkload) -> None: ...

    def suspend(self, host: str, workload: DriverWorkload) -> None: ...

    def resume(self, host: str, workload: DriverWorkload) -> None: ...

    def delete(self, host: str, workload: DriverWorkload) -> None: ...

    def exists(self, host: str, workload: DriverWorkload) -> bool: ...


@runtime_checkable
class MigrationHandle(Protocol):
    """A migration in flight. `progress` never blocks; `wait` returns the progress when done or
    after `timeout_s` (state still RUNNING then); `abort` asks it to stop (the workload stays on
    the source; a migration already completed stays completed)."""

    def progress(self) -> MigrationProgress: ...

    def abort(self) -> None: ...

    def wait(self, timeout_s: float | None = None) -> MigrationProgress: ...


@runtime_checkable
class Migration(Protocol):
    def check_migration(self, workload: DriverWorkload, src: HostBinding) -> None:
        """Raise DriverRefusal (409) when the workload cannot leave `src` as it is; changes nothing
        (services ask before queueing a migration, so the refusal is the request's answer)."""

    def start_migration(self, workload: DriverWorkload, src: HostBinding, dst: HostBinding,
                        live: bool = True) -> MigrationHandle: ...


@runtime_checkable
class Snapshots(Protocol):
    def snapshot_create(self, host: str, workload: DriverWorkload, name: str) -> SnapshotInfo: ...

    def snapshot_list(self, host: str, workload: DriverWorkload) -> list[SnapshotInfo]: ...

    def snapshot_delete(self, host: str, workload: DriverWorkload, name: str) -> None: ...

    def snapshot_restore(self, host: str, workload: DriverWorkload, name: str) -> None: ...


@runtime_checkable
class BackupImage(Protocol):
    """Backups (services/backups.py): the driver streams a guest's image out and back in; the
    service owns where the bytes go (a backup target) and checks them."""

    def export_image(self, host: str, workload: DriverWorkload, out: BinaryIO) -> ImageInfo:
        """Write the guest's disk and memory image to `out` (the guest keeps running)."""

    def import_image(self, host: str, workload: DriverWorkload, src: BinaryIO) -> ImageInfo:
        """Bring the guest up on `host` from an image read from `src` (it may be another host than
        the one it was exported on); DriverError when the image is corrupt."""


@runtime_checkable
class WorkloadStats(Protocol):
    def workload_stats(self, host: str) -> dict[str, WorkloadSample]:
        """Workload key -> its latest sample, for every workload the host runs."""


@dataclass(frozen=True)
class GuestMemory:
    """A guest's memory as the hypervisor sees it (virDomainMemoryStats on libvirt)."""

    balloon_mib: float  # memory the guest has now
    working_set_mib: float  # memory it actively uses
    last_active: float  # epoch seconds of its last activity


@runtime_checkable
class Balloon(Protocol):
    """Memory pooling (services/memory.py): read a guest's balloon, resize it."""

    def guest_memory(self, host: str, workload: DriverWorkload) -> GuestMemory: ...

    def set_memory(self, host: str, workload: DriverWorkload, mb: float) -> float:
        """Resize the balloon; returns the size reached (never below the guest's working set)."""


@runtime_checkable
class VolumeAttach(Protocol):
    """`detach_volume` hands what the guest's disk holds to `copy_back` as (offset, bytes) pieces
    once the guest released it and before the disk goes (ranges the guest never wrote may be left
    out); a copy_back that raises keeps the disk's file, and the error propagates."""

    def attach_volume(self, host: str, workload: DriverWorkload, volume: VolumeSpec) -> None: ...

    def detach_volume(self, host: str, workload: DriverWorkload, volume_id: str,
                      copy_back: CopyBack | None = None) -> None: ...


@runtime_checkable
class NicAttach(Protocol):
    def attach_nic(self, host: str, workload: DriverWorkload, nic: NicSpec) -> None: ...

    def detach_nic(self, host: str, workload: DriverWorkload, mac: str) -> None: ...


@runtime_checkable
class Fencing(Protocol):
    """Used by the `driver` fence agent: after `fence` the host runs none of its guests and
    accepts no new ones, until `unfence` (the host rejoins empty)."""

    def fence(self, host: str) -> None: ...

    def unfence(self, host: str) -> None: ...


#: what Power.power_state answers
POWER_ON, POWER_OFF, POWER_BOOTING = "on", "off", "booting"


@runtime_checkable
class Power(Protocol):
    """Distributed power management (services/controller.py): switch an empty host off, and on
    again; a host takes time to boot (`power_state` says "booting" until it can run guests)."""

    def power_off(self, host: str) -> None:
        """Switch the host off; refuses (DriverError) while it still runs guests."""

    def power_on(self, host: str) -> None:
        """Start booting the host (idempotent); `power_state` tells when it is on."""

    def power_state(self, host: str) -> str:
        """"on", "off" or "booting"."""


PROTOCOLS: dict[Capability, type] = {
    Capability.LIFECYCLE: Lifecycle, Capability.MIGRATION: Migration,
    Capability.SNAPSHOTS: Snapshots, Capability.STATS: WorkloadStats,
    Capability.BALLOON: Balloon, Capability.VOLUME_ATTACH: VolumeAttach,
    Capability.NIC_ATTACH: NicAttach, Capability.HOST_INFO: HostDriver,
    Capability.FENCE: Fencing, Capability.POWER: Power, Capability.BACKUP_IMAGE: BackupImage,
}


def supports(driver: object, cap: Capability) -> bool:
    return cap in getattr(driver, "capabilities", frozenset())


def require(driver: object, cap: Capability, *, host: str | None = None, action: str | None = None) -> None:
    """Raise UnsupportedByDriver (409) unless `driver` declares `cap`.

    `action` overrides the message's verb ("live-migrate"). A driver that declares a capability
    but lacks its methods is a bug in the driver, hence a TypeError rather than a user error.
    """
    if not supports(driver, cap):
        name = getattr(driver, "name", type(driver).__name__)
        where = f" of host {host}" if host else ""
        raise UnsupportedByDriver(f"driver {name!r}{where} cannot {action or _VERBS[cap]}",
                                  detail={"driver": name, "host": host, "capability": str(cap)})
    proto = PROTOCOLS[cap]
    if not _implements(driver, proto):
        raise TypeError(f"driver {type(driver).__name__} declares {cap} but does not implement "
                        f"{proto.__name__}")


# Typed accessors: `as_migration(d, host=h).start_migration(...)` instead of hasattr probes.
_CLASS_IMPLEMENTS: dict[tuple[type, type], bool] = {}


def _implements(driver: object, proto: type) -> bool:
    """isinstance(driver, proto), with the class's answer remembered: a runtime protocol's
    isinstance looks up every member on each call (about 20 µs, and every create and delete asks
    for the host's lifecycle). A class whose methods implement the protocol answers for all its
    instances; otherwise the instance itself is checked each time."""
    key = (type(driver), proto)
    by_class = _CLASS_IMPLEMENTS.get(key)
    if by_class is None:
        try:
            by_class = _CLASS_IMPLEMENTS[key] = issubclass(type(driver), proto)
        except TypeError:  # a protocol with data members: instances only
            by_class = _CLASS_IMPLEMENTS[key] = False
    return by_class or isinstance(driver, proto)


def as_lifecycle(driver: object, *, host: str | None = None) -> Lifecycle:
    require(driver, Capability.LIFECYCLE, host=host)
    return cast(Lifecycle, driver)


def as_migration(driver: object, *, host: str | None = None, live: bool = True) -> Migration:
    require(driver, Capability.MIGRATION, host=host, action="live-migrate" if live else "migrate")
    return cast(Migration, driver)


def as_snapshots(driver: object, *, host: str | None = None) -> Snapshots:
    require(driver, Capability.SNAPSHOTS, host=host)
    return cast(Snapshots, driver)


def as_workload_stats(driver: object, *, host: str | None = None) -> WorkloadStats:
    require(driver, Capability.STATS, host=host)
    return cast(WorkloadStats, driver)


def as_balloon(driver: object, *, host: str | None = None) -> Balloon:
    require(driver, Capability.BALLOON, host=host)
    return cast(Balloon, driver)


def as_volume_attach(driver: object, *, host: str | None = None) -> VolumeAttach:
    require(driver, Capability.VOLUME_ATTACH, host=host)
    return cast(VolumeAttach, driver)


def as_nic_attach(driver: object, *, host: str | None = None) -> NicAttach:
    require(driver, Capability.NIC_ATTACH, host=host)
    return cast(NicAttach, driver)


def as_fencing(driver: object, *, host: str | None = None) -> Fencing:
    require(driver, Capability.FENCE, host=host)
    return cast(Fencing, driver)


def as_power(driver: object, *, host: str | None = None) -> Power:
    require(driver, Capability.POWER, host=host)
    return cast(Power, driver)


def as_backup_image(driver: object, *, host: str | None = None) -> BackupImage:
    require(driver, Capability.BACKUP_IMAGE, host=host)
    return cast(BackupImage, driver)
