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


class AllocationRow(Base):
    """One workload's share of one resource on one host (the ledger hosts' `allocated` must sum to)."""

    __tablename__ = "allocations"
    __table_args__ = (UniqueConstraint("workload_id", "host_id", "resource"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"), index=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    resource: Mapped[str] = mapped_column(String(63))
    amount: Mapped[float] = mapped_column(Float)


class EventRow(Base):
    """Audit log: written in the same transaction as the use case it records."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(63))
    subject: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    project: Mapped[str | None] = mapped_column(String(63), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


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
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    protocol: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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
