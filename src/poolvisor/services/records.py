"""Plain frozen records returned by the services layer (the API turns them into pydantic models).

They are deliberately independent of the ORM rows (store/rows.py) and of the API schemas, so each
layer can change its representation without rippling through the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Role = Literal["admin", "member", "viewer"]

# Workload states. Allocations are held in every state but LOST. PLACING, MIGRATING and DELETING
# are transient: a use case is between its transactions (a crash there is repaired on start).
PLACING = "placing"
RUNNING = "running"
STOPPED = "stopped"
SUSPENDED = "suspended"
MIGRATING = "migrating"
DELETING = "deleting"
LOST = "lost"
PREEMPTED = "preempted"  # evicted for a higher priority class: released, no host (state_reason says why)
DRY_RUN = "dry-run"
HOLDING_STATES: tuple[str, ...] = (PLACING, RUNNING, STOPPED, SUSPENDED, MIGRATING, DELETING)
WORKLOAD_STATES: tuple[str, ...] = (*HOLDING_STATES, LOST, PREEMPTED)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an admin (project None), a member of one project, or a read-only viewer (of
    one project, or of everything when project is None); the token's expiry."""

    token_id: int
    project: str | None
    role: Role
    expires_at: datetime | None = None


@dataclass(frozen=True)
class TokenRecord:
    """A token as listed (never the secret): state is active, expired or revoked; `hint` is the
    token's first characters, to tell tokens apart."""

    id: int
    role: str
    project: str | None
    label: str
    hint: str
    created_at: datetime
    created_by: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str


@dataclass(frozen=True)
class PoolRecord:
    """capacity/allocated/free are sums over the pool's hosts of allocatable amounts
    (physical capacity times overcommit), per resource; `allocatable` repeats capacity under the
    name the hosts use. used/used_at/measured_workloads/running_workloads: measured use
    (services/usage.py; used None = unknown). stranded: free scarce resources no request needing
    them can use any more, per resource, and the hosts where they are."""

    name: str
    description: str
    hosts: int
    capacity: dict[str, float]
    allocated: dict[str, float]
    free: dict[str, float]
    allocatable: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] | None = None
    used_at: datetime | None = None
    measured_workloads: int = 0
    running_workloads: int = 0
    stranded: dict[str, float] = field(default_factory=dict)
    stranded_hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GpuDeviceRecord:
    """One GPU of a host: milli-GPU allocated and free (1000 = the whole device)."""

    device: int
    model: str
    memory_mib: float
    allocated_milli: int
    free_milli: int


@dataclass(frozen=True)
class GpuShareRecord:
    """What a workload holds of one GPU device of its host."""

    host: str
    device: int
    model: str
    milli: int


@dataclass(frozen=True)
class HostRecord:
    """capacity is the physical capacity as declared; allocatable = capacity * overcommit;
    free = allocatable - allocated. used/used_at/measured_workloads/running_workloads: measured
    use from the recorded samples (services/usage.py; used None = unknown)."""

    name: str
    pool: str | None
    state: str
    capacity: dict[str, float]
    overcommit: dict[str, float]
    allocated: dict[str, float]
    free: dict[str, float]
    labels: dict[str, str]
    domain: str
    max_workloads: int
    workloads: int
    generation: int
    allocatable: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] | None = None
    used_at: datetime | None = None
    measured_workloads: int = 0
    running_workloads: int = 0
    driver: str = "sim"
    uri: str = ""
    fence: str = "driver"
    gpus: list[GpuDeviceRecord] = field(default_factory=list)


@dataclass(frozen=True)
class FlavorRecord:
    name: str
    demand: dict[str, float]


@dataclass(frozen=True)
class ProjectRecord:
    name: str
    workloads: int
    weight: float = 1.0  # its weight in the queue's weighted dominant-resource fair share


@dataclass(frozen=True)
class WorkloadRecord:
    """explanation is the placement Decision's explanation (Explanation.to_dict()) when known."""

    name: str
    project: str
    kind: str
    state: str
    host: str | None
    demand: dict[str, float]
    priority: int
    group: str | None
    created_at: datetime
    explanation: dict[str, Any] | None = None
    gpus: list[GpuShareRecord] = field(default_factory=list)  # the GPU devices it holds
    priority_class: str = "normal"  # policies/preemption.py PRIORITY_CLASSES
    state_reason: str | None = None  # why the system put it in its state (e.g. preempted by whom)
    resources: dict[str, dict[str, float]] | None = None  # declared reservation/limit/shares (0015)
    # what its host gives it now per resource (a driver that shares a contended host: policies/shares.py
    # `grant`); filled by a single workload's read (services/shares.py `granted`), else None
    granted: dict[str, float] | None = None

    @property
    def sized_by(self) -> str | None:
        """The allocation policy that sized its claim (min, max, balanced); None: nothing declared."""
        got = (self.explanation or {}).get("sized_by") if self.resources else None
        return str(got) if got is not None else None


@dataclass(frozen=True)
class EventRecord:
    id: int
    time: datetime
    kind: str
    subject: str
    message: str
    project: str | None
    data: dict[str, Any] = field(default_factory=dict)
    severity: str = "info"  # info | warning | critical (0009)


@dataclass(frozen=True)
class CheckReport:
    """Result of the invariant check; ok is False as soon as one violation is listed."""

    ok: bool
    violations: list[str]
    counts: dict[str, int]


# Task states (services/tasks.py): queued and running are active (leased); the rest are final.
TASK_QUEUED, TASK_RUNNING = "queued", "running"
TASK_SUCCEEDED, TASK_FAILED = "succeeded", "failed"
TASK_CANCELLED, TASK_ROLLED_BACK = "cancelled", "rolled_back"
TASK_ACTIVE: tuple[str, ...] = (TASK_QUEUED, TASK_RUNNING)
TASK_STATES: tuple[str, ...] = (*TASK_ACTIVE, TASK_SUCCEEDED, TASK_FAILED, TASK_CANCELLED, TASK_ROLLED_BACK)


@dataclass(frozen=True)
class TaskRecord:
    """A long operation as the API shows it: progress 0..1, the result or error once final, and
    its log entries ({time, message}); parent: the task that spawned it (a consolidation's moves)."""

    id: int
    kind: str
    state: str
    project: str | None
    subject: str
    progress: float
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    entries: list[dict[str, Any]]
    parent: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
