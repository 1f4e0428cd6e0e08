"""Request and response bodies of the REST API (pydantic), separate from the services' records.

Limits live here so they appear in the OpenAPI document: names are 1..63 characters starting with a
letter or digit, resource names are lowercase identifiers, amounts are finite, >= 0 and <= 1e15,
maps are bounded. The services re-check everything (unknown resources, duplicates, references).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from poolvisor.domain.resources import MAX_QUANTITY

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
RESOURCE_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
MAX_MAP_ENTRIES = 32

Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=NAME_PATTERN)]
ResourceName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=RESOURCE_PATTERN)]
Amount = Annotated[float, Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False)]
Ratio = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=NAME_PATTERN)]
LabelValue = Annotated[str, StringConstraints(max_length=255)]
Demand = Annotated[dict[ResourceName, Amount], Field(max_length=MAX_MAP_ENTRIES)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_MAP_ENTRIES)]

HostStateName = Literal["up", "maintenance", "fenced", "down"]
GroupPolicyName = Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity", "domain-spread"]
Action = Literal["start", "stop", "suspend", "resume"]


class _In(BaseModel):
    """Request bodies reject unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---- pools -------------------------------------------------------------------------------------
class PoolCreate(_In):
    name: Name
    description: Annotated[str, StringConstraints(max_length=1000)] = ""


class PoolOut(_Out):
    name: str
    description: str
    hosts: int
    capacity: dict[str, float]
    allocated: dict[str, float]
    free: dict[str, float]


# ---- hosts -------------------------------------------------------------------------------------
class HostCreate(_In):
    name: Name
    capacity: Annotated[Demand, Field(min_length=1)]
    pool: Name | None = None
    overcommit: Annotated[dict[ResourceName, Ratio], Field(max_length=MAX_MAP_ENTRIES)] | None = None
    labels: Labels | None = None
    domain: Name = "default"
    max_workloads: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class HostStateChange(_In):
    state: HostStateName


class HostOut(_Out):
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


# ---- flavors, projects, tokens -----------------------------------------------------------------
class FlavorCreate(_In):
    name: Name
    demand: Annotated[Demand, Field(min_length=1)]


class FlavorOut(_Out):
    name: str
    demand: dict[str, float]


class ProjectCreate(_In):
    name: Name


class ProjectOut(_Out):
    name: str
    workloads: int


class TokenCreate(_In):
    role: Literal["admin", "member"]
    project: Name | None = Field(default=None, description="required for members, forbidden for admins")


class TokenOut(BaseModel):
    token: str = Field(description="the bearer token; shown once, stored only as a hash")
    role: str
    project: str | None


class WhoAmI(BaseModel):
    role: str
    project: str | None


# ---- workloads ---------------------------------------------------------------------------------
class FilterReportOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    filter: str
    rejected: int
    reasons: dict[str, int]
    remaining: int
    dominant_reason: str | None = None


class CandidateOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    host: str
    score: float
    scores: dict[str, float]


class ExplanationOut(BaseModel):
    """Why a host was chosen (or none): per-filter rejections, then the best candidates' scores."""

    model_config = ConfigDict(extra="allow")
    hosts_considered: int
    filters: list[FilterReportOut]
    candidates: int
    top: list[CandidateOut] = []
    rule: str = ""
    summary: str = ""


class WorkloadCreate(_In):
    name: Name
    project: Name | None = Field(
        default=None, description="members: their project (implicit); admins: defaults to 'default'")
    flavor: Name | None = None
    demand: Demand | None = None
    kind: Literal["vm", "container"] = "vm"
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    group: Name | None = None
    group_policy: GroupPolicyName | None = None
    required_labels: Labels | None = None
    forbidden_labels: Labels | None = None
    pool: Name | None = None
    networks: Annotated[list[Name], Field(max_length=8, description="one NIC per network")] | None = None


class WorkloadOut(_Out):
    name: str
    project: str
    kind: str
    state: str
    host: str | None
    demand: dict[str, float]
    priority: int
    group: str | None
    created_at: datetime
    explanation: ExplanationOut | None = None


class MigrateRequest(_In):
    host: Name | None = Field(default=None, description="target host; omitted = let placement choose")


class BatchItem(_In):
    """One workload of a batch. Labels, groups and affinity are not supported in batch mode."""

    name: Name
    flavor: Name | None = None
    demand: Demand | None = None
    kind: Literal["vm", "container"] = "vm"
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0


class WorkloadBatchCreate(_In):
    project: Name | None = Field(
        default=None, description="members: their project (implicit); admins: defaults to 'default'")
    pool: Name | None = None
    all_or_nothing: bool = Field(default=True, description="create nothing unless every workload fits")
    workloads: Annotated[list[BatchItem], Field(min_length=1, max_length=1000)]


class MoveOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    workload: str
    from_: str | None = Field(default=None, alias="from")
    to: str | None
    reason: str


class PlanOut(BaseModel):
    """A packing plan: one move per workload (from None = new placement; to None = not placed)."""

    kind: str
    summary: str
    hosts_before: int
    hosts_after: int
    lower_bound: int
    moves: list[MoveOut]
    notes: list[str]


class WorkloadBatchOut(_Out):
    workloads: list[WorkloadOut]
    unplaced: list[str]
    plan: PlanOut


class ConsolidationRequest(_In):
    max_migrations: Annotated[int, Field(ge=0, le=100_000)] | None = None
    apply: bool = Field(default=False, description="execute the moves (live migrations), not only plan")


class ConsolidationOut(_Out):
    pool: str
    plan: PlanOut
    hosts_emptied: list[str]
    applied: bool
    executed: list[str]
    failed: list[str]


# ---- utilization -------------------------------------------------------------------------------
MAX_EPOCH_S = 4_102_444_800.0  # 2100-01-01
EpochSeconds = Annotated[float, Field(ge=0, le=MAX_EPOCH_S, allow_inf_nan=False,
                                      description="seconds since 1970-01-01 UTC")]


class UtilizationSampleIn(_In):
    workload: Name
    project: Name | None = Field(
        default=None, description="members: their project (implicit); admins: defaults to 'default'")
    time: EpochSeconds | datetime = Field(description="epoch seconds or ISO 8601 (no offset = UTC)")
    cpu: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False,
                                description="fraction of the workload's vCPU demand in use")]

    @field_validator("time", mode="before")
    @classmethod
    def _seconds_not_millis(cls, v: Any) -> Any:
        """A number must be epoch seconds (pydantic would read a big one as milliseconds)."""
        num = v
        if isinstance(v, str):
            try:
                num = float(v)
            except ValueError:
                return v  # an ISO 8601 date
        if isinstance(num, (int, float)) and not isinstance(num, bool) and not 0 <= num <= MAX_EPOCH_S:
            raise ValueError(f"epoch seconds must be within 0..{MAX_EPOCH_S:.0f} (1970..2100)")
        return v


class UtilizationIn(_In):
    samples: Annotated[list[UtilizationSampleIn], Field(min_length=1, max_length=10_000)]


class UtilizationRecorded(BaseModel):
    recorded: int


class UtilizationOut(BaseModel):
    """The samples resampled: cpu[k] is the mean over [start + k*interval_s, start + (k+1)*interval_s),
    the last value carried over buckets without samples."""

    project: str
    workload: str
    interval_s: float
    start: datetime
    cpu: list[float]


# ---- events, health ----------------------------------------------------------------------------
class EventOut(_Out):
    id: int
    time: datetime
    kind: str
    subject: str
    message: str
    project: str | None
    data: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
