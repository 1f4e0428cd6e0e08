"""ORM rows (SQLAlchemy 2 typed mappings): the persistent shape, separate from domain and API types.

Resources are dynamic: a host's capacity, overcommit and allocated amounts live in one
`host_resources` row per (host, resource), and each workload's share of a host in one
`allocations` row per (workload, host, resource). `hosts.generation` is bumped by every change
to a host's allocations or state, which is what optimistic placement commits compare against.
`utilization_samples` holds each workload's recorded CPU use (what-if replays it). A workload in a
transient state carries the lease of the process running its use case (`lease_owner`,
`lease_expires`); tokens carry an optional expiry and a revocation time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class MetaRow(Base):
    """Small key/value facts (e.g. 'admin-bootstrapped'); a unique key doubles as a once-only latch."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(63), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


class TokenRow(Base):
    """A bearer token, stored as its sha256 digest; valid while not revoked and not expired
    (checked on every request, so a revocation holds at once on every process sharing the database)."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the bearer token
    role: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0003: a label and the token's first characters (to recognize it in lists), who minted it,
    # an optional expiry and the revocation time
    label: Mapped[str] = mapped_column(String(63), default="", server_default="")
    hint: Mapped[str] = mapped_column(String(16), default="", server_default="")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class PoolRow(Base):
    __tablename__ = "pools"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0013: the order its pending-creation queue is served in (policies/queueing.py)
    queue_discipline: Mapped[str] = mapped_column(String(16), default="priority", server_default="priority")
    # 0015: what placement sets aside for a workload: min (reservation), max (limit) or balanced
    # (policies/shares.py)
    allocation_policy: Mapped[str] = mapped_column(String(16), default="max", server_default="max")


class HostRow(Base):
    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="up")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    domain: Mapped[str] = mapped_column(String(63), default="default")
    max_workloads: Mapped[int] = mapped_column(Integer, default=0)
    workloads: Mapped[int] = mapped_column(Integer, default=0)  # workloads holding an allocation here
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0006: the driver that runs the host, where it reaches the node, and how the host is fenced
    # (fencing/: "driver", "sim", "none" or "command:ARGV")
    driver: Mapped[str] = mapped_column(String(32), default="sim", server_default="sim")
    uri: Mapped[str] = mapped_column(String(1024), default="", server_default="")
    fence: Mapped[str] = mapped_column(String(1024), default="driver", server_default="driver")


class HostResourceRow(Base):
    __tablename__ = "host_resources"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    resource: Mapped[str] = mapped_column(String(63), primary_key=True)
    capacity: Mapped[float] = mapped_column(Float)  # physical
    overcommit: Mapped[float] = mapped_column(Float, default=1.0)
    allocated: Mapped[float] = mapped_column(Float, default=0.0)


class FlavorRow(Base):
    __tablename__ = "flavors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    demand: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0015: the project's weight in the weighted dominant-resource fair share of the queue (drf)
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")


class GroupRow(Base):
    """An affinity group of one project; its generation guards concurrent hard-policy placements."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    policy: Mapped[str] = mapped_column(String(32))
    generation: Mapped[int] = mapped_column(Integer, default=0)


class WorkloadRow(Base):
    __tablename__ = "workloads"
    __table_args__ = (UniqueConstraint("project_id", "name"),
                      Index("ix_workloads_host_state", "host_id", "state"),
                      Index("ix_workloads_state_lease", "state", "lease_expires"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16), default="vm")
    state: Mapped[str] = mapped_column(String(16))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id"), index=True)
    flavor: Mapped[str | None] = mapped_column(String(63))
    demand: Mapped[dict[str, Any]] = mapped_column()
    priority: Mapped[int] = mapped_column(Integer, default=0)
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # the placement constraints (pool, labels), kept so migrations re-apply them
    constraints: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0003: the lease of the use case in flight on a transient row (placing, migrating, deleting):
    # which process owns it and until when (renewed while it runs); an expired lease means the
    # owner died and the repair sweep may take the row over (services/leases.py)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(nullable=True)
    # 0013: the priority class (policies/preemption.py: spot < low < normal < high < system) and why
    # the workload is in its state when the system put it there (e.g. who preempted it)
    priority_class: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    state_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # 0015: per resource {"reservation", "limit", "shares"} as declared (None: nothing declared;
    # `demand` then is both); `demand` holds what the pool's allocation policy set aside
    resource_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AllocationRow(Base):
    """One workload's share of one resource on one host (the ledger hosts' `allocated` must sum to)."""

    __tablename__ = "allocations"
    __table_args__ = (UniqueConstraint("workload_id", "host_id", "resource"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    resource: Mapped[str] = mapped_column(String(63))
    amount: Mapped[float] = mapped_column(Float)


class HostGpuRow(Base):
    """0008: one GPU device of a host (``device`` 0..count-1, as many as the host's ``gpu``
    capacity), its model and memory, and the milli-GPU allocated on it (0..1000): the sum of its
    ``gpu_allocations``, kept within 1000 by the ledger's guarded UPDATE (services/ledger.py)."""

    __tablename__ = "host_gpus"
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True)
    device: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(63), default="")
    memory_mib: Mapped[float] = mapped_column(Float, default=0.0)
    allocated: Mapped[int] = mapped_column(Integer, default=0)  # milli-GPU


class GpuAllocationRow(Base):
    """0008: a workload's share of one GPU device: ``milli`` (1..1000) of device ``device`` of its host.
    A fractional request holds one row, a request for n whole GPUs n rows of 1000."""

    __tablename__ = "gpu_allocations"
    __table_args__ = (UniqueConstraint("workload_id", "host_id", "device"),
                      Index("ix_gpu_allocations_host_device", "host_id", "device"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"))
    device: Mapped[int] = mapped_column(Integer)
    milli: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """Audit log: written in the same transaction as the use case it records."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(63), index=True)  # 0009: indexed
    subject: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    project: Mapped[str | None] = mapped_column(String(63), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    severity: Mapped[str] = mapped_column(String(16), default="info", server_default="info")  # 0009


class AlertRow(Base):
    """0009: a condition an alert rule found on a subject (services/alerts.py). `open_key` is
    `rule:subject` while active, NULL once resolved: one active alert per condition (unique)."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_open_key", "open_key", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(63))
    subject: Mapped[str] = mapped_column(String(200))
    project: Mapped[str | None] = mapped_column(String(63), index=True)  # None: admins only
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)  # active | resolved
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    open_key: Mapped[str | None] = mapped_column(String(270), nullable=True)
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(63), nullable=True)


class UtilizationSampleRow(Base):
    """One CPU sample of one workload: the fraction (0..1) of its vCPU demand in use at `time`.

    Time is epoch seconds (UTC) as a float, so a history is read straight into numpy arrays; the
    samples go with their workload (cascade) and are read per workload and time range (index).
    """

    __tablename__ = "utilization_samples"
    __table_args__ = (Index("ix_utilization_samples_workload_time", "workload_id", "time"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    time: Mapped[float] = mapped_column(Float)
    cpu: Mapped[float] = mapped_column(Float)


class TaskRow(Base):
    """0004: a long operation (migrate, consolidation apply; later drain, snapshot, restore,
    backup) and its journal. `state` is queued, running, succeeded, failed, cancelled or
    rolled_back; a queued or running task carries the lease of the process that owns it (as
    transient workloads do), so crash recovery can tell a dead owner's task from a live one's.
    `journal` is the task's ledger (for a migration: from, to, the workload's state before; for
    a consolidation: the planned moves), `entries` its progress log; a migration's child tasks
    name their parent."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_state_lease", "state", "lease_expires"),
                      Index("ix_tasks_workload_state", "workload_id", "state"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    project: Mapped[str | None] = mapped_column(String(63), index=True)  # None: admins only
    subject: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    journal: Mapped[dict[str, Any]] = mapped_column(default=dict)
    entries: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{time, message}, ...]
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    workload_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"), index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


# ---- networks (docs/network.md) ------------------------------------------------------------------
# Addresses are 16-byte big-endian keys (domain/addresses.py): SQLite and PostgreSQL both sort them
# numerically, for IPv4, IPv6 and MAC alike.
Key = LargeBinary(16)


class IpPoolRow(Base):
    """An address pool (IPv4, IPv6 or MAC) of one project (the global MAC pool has none).

    Every change to the pool's intervals first bumps `generation`: that UPDATE row-locks the pool on
    PostgreSQL (SQLite's writer lock already serializes), so allocations in one pool are serialized.
    """

    __tablename__ = "ip_pools"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    family: Mapped[str] = mapped_column(String(8))
    cidr: Mapped[str] = mapped_column(String(64))
    first: Mapped[bytes] = mapped_column(Key)  # the allocatable interval
    last: Mapped[bytes] = mapped_column(Key)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IpFreeRow(Base):
    """One free interval of a pool. A pool's free rows are disjoint and never adjacent (merged on
    release), so the next free address is the smallest `first`: one indexed lookup, whatever the size."""

    __tablename__ = "ip_free"
    __table_args__ = (UniqueConstraint("pool_id", "first"), Index("ix_ip_free_pool_last", "pool_id", "last"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("ip_pools.id", ondelete="CASCADE"))
    first: Mapped[bytes] = mapped_column(Key)
    last: Mapped[bytes] = mapped_column(Key)


class IpAllocationRow(Base):
    """One allocated interval (a single address: first == last). kind: address (allocated through
    the IP API), reserved (a reserved range), gateway, nic, router (held by that object)."""

    __tablename__ = "ip_allocations"
    __table_args__ = (UniqueConstraint("pool_id", "first"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("ip_pools.id", ondelete="CASCADE"))
    first: Mapped[bytes] = mapped_column(Key)
    last: Mapped[bytes] = mapped_column(Key)
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NetworkRow(Base):
    """A virtual network of one project: one subnet, its address pool, and its gateway address."""

    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    pool_id: Mapped[int] = mapped_column(ForeignKey("ip_pools.id"), unique=True)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64), default="")  # "" = no gateway
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NicRow(Base):
    """A workload's NIC: an address of the network's pool and a MAC of the global MAC pool.
    No cascade from workloads: deleting a workload releases its NICs first (services/networks.py)."""

    __tablename__ = "nics"
    __table_args__ = (UniqueConstraint("network_id", "address"),
                      UniqueConstraint("workload_id", "network_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id"), index=True)
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    address: Mapped[bytes] = mapped_column(Key)
    mac: Mapped[bytes] = mapped_column(Key, unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RouterRow(Base):
    """A virtual router of one project; `protocol` computes its dynamic routes."""

    __tablename__ = "routers"
    __table_args__ = (UniqueConstraint("project_id", "name"),
                      UniqueConstraint("project_id", "asn", name="uq_routers_project_asn"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    protocol: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0008: path-vector: the router's AS number and import policy (neighbour router -> local preference)
    asn: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    local_pref: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")


class RouterInterfaceRow(Base):
    """A router's leg on a network: an address of the network's pool, a link cost, up or down."""

    __tablename__ = "router_interfaces"
    __table_args__ = (UniqueConstraint("router_id", "network_id"), UniqueConstraint("network_id", "address"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    router_id: Mapped[int] = mapped_column(ForeignKey("routers.id"))
    network_id: Mapped[int] = mapped_column(ForeignKey("networks.id"), index=True)
    address: Mapped[bytes] = mapped_column(Key)
    mac: Mapped[bytes] = mapped_column(Key, unique=True)
    cost: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(8), default="up")


class StaticRouteRow(Base):
    __tablename__ = "static_routes"
    __table_args__ = (UniqueConstraint("router_id", "prefix", "nexthop"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    router_id: Mapped[int] = mapped_column(ForeignKey("routers.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(64))
    nexthop: Mapped[str] = mapped_column(String(64))
    metric: Mapped[int] = mapped_column(Integer, default=1)


class SnapshotRow(Base):
    """0006: a workload's snapshot. `state` is creating, ready, restoring or deleting (the task
    that changes it holds the workload's lease); `workload_state` is the state it captured."""

    __tablename__ = "workload_snapshots"
    __table_args__ = (UniqueConstraint("workload_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    workload_state: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    host: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---- storage and memory pools (0007, docs/storage.md) --------------------------------------------
class StoragePoolRow(Base):
    """A storage pool: devices grouped under one replication factor and over-subscription ratio.

    `access` says which hosts reach it: "network" (every host) or "local" (only hosts holding a
    device of the pool), in both cases only hosts of compute pool `compute_pool_id` when set. Space is
    handed out in MiB units; a volume is cut into `segment_mib` segments, each placed on `replicas`
    devices of distinct failure domains (straw2). On byte-holding devices a segment's data is stored
as objects of `chunk_mib` (a divisor of `segment_mib`): 4 MiB for new pools, 1 MiB for pools
created before revision 0016 (their objects stay readable). `generation` is bumped by every
placement change."""

    __tablename__ = "storage_pools"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    replicas: Mapped[int] = mapped_column(Integer, default=3)
    oversubscription: Mapped[float] = mapped_column(Float, default=1.0)
    segment_mib: Mapped[int] = mapped_column(Integer, default=1024)
    chunk_mib: Mapped[int] = mapped_column(Integer, default=4, server_default="1")
    access: Mapped[str] = mapped_column(String(16), default="network")
    compute_pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id"), nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StorageDeviceRow(Base):
    """A device of a storage pool: local to a host (`host_id`) or shared (None); capacity in MiB;
    state up, leaving (drained by the next rebalance) or failed (its replicas are lost)."""

    __tablename__ = "storage_devices"
    # ids never reused (0017): a directory's marker names its device by id
    __table_args__ = (UniqueConstraint("pool_id", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), nullable=True, index=True)
    capacity_mib: Mapped[int] = mapped_column(Integer)
    klass: Mapped[str] = mapped_column(String(16), default="ssd")
    domain: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16), default="up")
    path: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # `dir` device: holds the bytes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VolumeRow(Base):
    """A volume of one project in one storage pool. Thick volumes hold all their segments from
    creation; thin ones get a segment when it is first written. `klass` pins it to a device class
    (tiering); `replicas` overrides the pool's; `last_access` feeds tiering. State: available,
    attached, failed (a segment lost every replica) or snapshot (read-only)."""

    __tablename__ = "volumes"
    # ids never reused (0017): a volume's objects are named by its id (segment_io.volume_key)
    __table_args__ = (UniqueConstraint("project_id", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    pool_id: Mapped[int] = mapped_column(ForeignKey("storage_pools.id"), index=True)
    size_mib: Mapped[int] = mapped_column(Integer)
    thin: Mapped[bool] = mapped_column(default=True)
    klass: Mapped[str | None] = mapped_column(String(16), nullable=True)
    replicas: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="available")
    last_access: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a snapshot: a read-only full copy of this volume's written segments when it was taken
    snapshot_of: Mapped[int | None] = mapped_column(ForeignKey("volumes.id", ondelete="SET NULL"),
                                                    nullable=True)


class VolumeSegmentRow(Base):
    """One replica of one segment of a volume: the device holding it and its extents there
    ([[start MiB, length MiB], ...]: one when contiguous, a chain otherwise)."""

    __tablename__ = "volume_segments"
    __table_args__ = (UniqueConstraint("volume_id", "segment", "replica"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    segment: Mapped[int] = mapped_column(Integer)
    replica: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[int] = mapped_column(ForeignKey("storage_devices.id"), index=True)
    extents: Mapped[list[Any]] = mapped_column(JSON)


class VolumeAttachmentRow(Base):
    """A volume attached to a workload (a volume has at most one attachment)."""

    __tablename__ = "volume_attachments"
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a detach copying the disk back since then (0017): the workload's delete waits for it (409)
    detaching_since: Mapped[datetime | None] = mapped_column(nullable=True)


class MemoryStateRow(Base):
    """A workload's memory pooling state: its reservation (never ballooned away, never
    overcommitted), the balloon's current size (memory granted to the guest; None = its full
    demand) and when the guest was last active (reclaim takes the least recently active first)."""

    __tablename__ = "memory_state"
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"), primary_key=True)
    reserved_mib: Mapped[float] = mapped_column(Float, default=0.0)
    granted_mib: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_active: Mapped[datetime | None] = mapped_column(nullable=True)
class ProjectQuotaRow(Base):
    """0010: a project's quota (`limits`: resource or `workloads` -> limit; `enforced` when it has
    any) and its creation rate limit (None: the server's default). Claims of the project's
    workloads bump `generation` of an enforced row first: that UPDATE is the lock (PostgreSQL row
    lock, SQLite's writer lock) under which the project's usage is summed and checked
    (services/quotas.py), so concurrent creations cannot together exceed the quota."""

    __tablename__ = "project_quotas"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enforced: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    rate_burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---- backups (0011, docs/backups.md) -------------------------------------------------------------
class BackupTargetRow(Base):
    """0011: where backups are copied: `kind` "dir" (a directory on the server, `path` absolute)."""

    __tablename__ = "backup_targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="dir")
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BackupScheduleRow(Base):
    """0011: back a workload (`workload`) or every member of a group (`group`) of a project up
    every `every_s` seconds into `target_id`, keeping the newest `keep` scheduled backups per
    workload. `next_at` is when the loop runs it next (services/backup_loop.py)."""

    __tablename__ = "backup_schedules"
    __table_args__ = (UniqueConstraint("project_id", "scope", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # workload or group
    name: Mapped[str] = mapped_column(String(63))
    target_id: Mapped[int] = mapped_column(ForeignKey("backup_targets.id"))
    every_s: Mapped[float] = mapped_column(Float)
    keep: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[datetime] = mapped_column()
    last_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BackupRow(Base):
    """0011: one backup of a workload, named by (project, workload name) rather than a foreign key
    so that it outlives the workload (restoring a deleted workload is its point). `spec` is what
    re-creating it needs (kind, demand, flavor, priority, group, constraints, networks); the image
    file is `path` under the target, with `sha256` and `size_bytes` as written. `state` creating,
    ready or restoring; `schedule_id` set when a schedule made it (its retention applies)."""

    __tablename__ = "backups"
    __table_args__ = (UniqueConstraint("project_id", "workload", "name"),
                      Index("ix_backups_schedule", "schedule_id", "workload"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    workload: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int] = mapped_column(ForeignKey("backup_targets.id"))
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("backup_schedules.id", ondelete="SET NULL"), nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    host: Mapped[str] = mapped_column(String(63))
    workload_state: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text, default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PendingWorkloadRow(Base):
    """0013: a creation request waiting for capacity (`wait: true`): the create's arguments
    (`request`), placed by the queue loop (services/queue.py) in its pool's discipline order and
    removed once created (or refused for good, with an event)."""

    __tablename__ = "pending_workloads"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"), nullable=True)
    name: Mapped[str] = mapped_column(String(63))
    priority_class: Mapped[str] = mapped_column(String(16))
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    demand: Mapped[dict[str, Any]] = mapped_column()
    request: Mapped[dict[str, Any]] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
