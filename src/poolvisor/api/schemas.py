"""Request and response bodies of the REST API (pydantic), separate from the services' records.

Limits live here so they appear in the OpenAPI document, built from the annotated types of
api/fields.py: names are 1..63 characters starting with a letter or digit, free text has no control
characters, resource names are lowercase identifiers, amounts are finite, >= 0 and <= 1e15, maps
are bounded, types are strict. The services re-check everything (unknown resources, duplicates,
references).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

from poolvisor.api.fields import (
    BALANCING_POLICY_PATTERN,
    INTEGRAL,
    MAX_MAP_ENTRIES,
    RESOURCE_PATTERN,
    Amount,
    Demand,
    Description,
    IsoDateTime,
    Labels,
    Name,
    Overcommit,
    Ratio,
    ResourceName,
    StrictModel,
)
from poolvisor.api.share_schemas import (
    LIMIT_DOC,
    RESERVATION_DOC,
    SHARES_DOC,
    Amounts,
    ResourceSpecOut,
    Shares,
    Weight,
)
from poolvisor.domain.text import NAME_PATTERN

__all__ = ["MAX_MAP_ENTRIES", "NAME_PATTERN", "RESOURCE_PATTERN", "Amount", "Name", "Ratio", "ResourceName"]

HostStateName = Literal["up", "maintenance", "fenced", "down"]
GroupPolicyName = Literal["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity", "domain-spread"]
Action = Literal["start", "stop", "suspend", "resume"]


class _In(StrictModel):
    """Request bodies: strict types, unknown fields rejected (see fields.StrictModel)."""


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# "exactly one of flavor or demand", as the schema states it (a null counts as absent)
_FLAVOR_XOR_DEMAND: list[JsonValue] = [
    {"required": ["flavor"], "properties": {"flavor": {"type": "string"}}},
    {"required": ["demand"], "properties": {"demand": {"type": "object"}}},
]


def _one_of_flavor_demand(flavor: str | None, demand: dict[str, float] | None) -> None:
    if (flavor is None) == (demand is None):
        raise ValueError("give exactly one of flavor or demand")


# ---- pools -------------------------------------------------------------------------------------
USED_DOC = ("measured use: vcpu = sum over running workloads of their latest CPU sample x their vCPU "
            "allocation; null when no running workload has a sample (a lower bound while "
            "measured_workloads < running_workloads)")


class PoolCreate(_In):
    name: Name
    description: Description = ""


class PoolOut(_Out):
    """Amounts are sums over the pool's hosts; capacity (= allocatable) is after overcommit."""

    name: str
    description: str
    hosts: int
    capacity: dict[str, float]
    allocated: dict[str, float]
    free: dict[str, float]
    allocatable: dict[str, float] = Field(default_factory=dict, description="= capacity: after overcommit")
    used: dict[str, float] | None = Field(default=None, description=USED_DOC)
    used_at: datetime | None = Field(default=None, description="time of the newest sample in `used`")
    measured_workloads: int = Field(default=0, description="running workloads with a recorded sample")
    running_workloads: int = 0
    stranded: dict[str, float] = Field(default_factory=dict, description=(
        "free scarce resources (e.g. gpu) on up hosts that cannot take even the smallest request "
        "needing them"))
    stranded_hosts: list[str] = Field(default_factory=list, description="the hosts holding `stranded`")


# ---- hosts -------------------------------------------------------------------------------------
DriverUri = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[!-~]*$")]  # printable ASCII
FenceMethod = Annotated[str, StringConstraints(max_length=1024,
                                               pattern=r"^(driver|sim|none|command:[ -~]*[!-~][ -~]*)$")]


class GpuGroup(_In):
    """Identical GPU devices of a host (a host may list several groups, e.g. mixed models)."""

    count: Annotated[int, Field(ge=1, le=64), INTEGRAL] = 1
    model: Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9][A-Za-z0-9._+-]{0,62})?$")] = ""
    memory_mib: Amount = 0.0


class GpuDeviceOut(_Out):
    device: int
    model: str
    memory_mib: float
    allocated_milli: int = Field(description="milli-GPU allocated on this device (1000 = all of it)")
    free_milli: int


class GpuShareOut(_Out):
    host: str
    device: int
    model: str
    milli: int = Field(description="milli-GPU of this device the workload holds")


class HostCreate(_In):
    name: Name
    capacity: Demand | None = Field(default=None, description="omitted: the node's own, from its driver")
    pool: Name | None = None
    overcommit: Overcommit | None = None
    labels: Labels | None = None
    domain: Name = "default"
    max_workloads: Annotated[int, Field(ge=0, le=1_000_000), INTEGRAL] = 0
    driver: Name = Field(default="sim", description="the driver that runs the host: sim, libvirt, lxc...")
    uri: DriverUri = Field(default="", description="where the driver reaches the node (libvirt URI...)")
    fence: FenceMethod = Field(default="driver", description="fence method: driver, sim, none or "
                               "command:PROGRAM [ARGS] (run with the host name; exit 0 = fenced)")


    gpus: Annotated[list[GpuGroup], Field(max_length=16)] | None = Field(default=None, description=(
        "the host's GPU devices in groups; without it, capacity.gpu anonymous devices (a whole number)"))


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
    allocatable: dict[str, float] = Field(default_factory=dict, description="capacity x overcommit")
    used: dict[str, float] | None = Field(default=None, description=USED_DOC)
    used_at: datetime | None = Field(default=None, description="time of the newest sample in `used`")
    measured_workloads: int = Field(default=0, description="running workloads with a recorded sample")
    running_workloads: int = 0
    driver: str = Field(default="sim", description="the driver that runs the host")
    uri: str = Field(default="", description="where the driver reaches the node")
    fence: str = Field(default="driver", description="the host's fence method")
    gpus: list[GpuDeviceOut] = Field(default_factory=list, description="GPU devices and their allocation")


# ---- flavors, projects, tokens -----------------------------------------------------------------
class FlavorCreate(_In):
    name: Name
    demand: Demand  # at least one positive amount, so never empty


class FlavorOut(_Out):
    name: str
    demand: dict[str, float]


class ProjectCreate(_In):
    name: Name
    weight: Weight | None = None  # fair-share weight in the queue (drf), 1 when absent


class ProjectOut(_Out):
    name: str
    workloads: int
    weight: float = 1.0


MAX_TOKEN_EXPIRES_IN_S = 10 * 366 * 86400  # = services.auth.MAX_EXPIRES_IN_S
TOKEN_LABEL_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,62})?$"


class TokenCreate(_In):
    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["role"], "properties": {"role": {"const": "admin"}, "project": {"type": "null"}}},
        {"properties": {"role": {"const": "member"}}},
        {"properties": {"role": {"const": "viewer"}}},
    ]})
    role: Literal["admin", "member", "viewer"] = Field(
        default="member", description="admin (admins only), member of `project`, or viewer: read-only, "
        "of `project` (from admins without `project`: a global viewer, reading what an admin reads)")
    project: Name | None = Field(default=None, description="for members: required from admins, the "
                                 "caller's own project by default from members; forbidden for admins")
    expires_in: Annotated[int, Field(ge=1, le=MAX_TOKEN_EXPIRES_IN_S), INTEGRAL] | None = Field(
        default=None, description="seconds until the token expires; default: never (or when the "
        "calling token expires: a token never outlives the token that created it)")
    label: Annotated[str, StringConstraints(max_length=63, pattern=TOKEN_LABEL_PATTERN)] = Field(
        default="", description="a name to recognize the token by in lists")

    @model_validator(mode="after")
    def _project_for_members_only(self) -> TokenCreate:
        # a member token without `project` is the calling member's own project (the route decides;
        # from an admin it is a 422 there)
        if self.role == "admin" and self.project is not None:
            raise ValueError("an admin token belongs to no project")
        return self


class TokenOut(BaseModel):
    token: str = Field(description="the bearer token; shown once, stored only as a hash")
    id: int
    role: str
    project: str | None
    label: str = ""
    expires_at: datetime | None = None


class TokenInfo(_Out):
    """A token as listed; never the secret, only its first characters (`hint`)."""

    id: int
    role: str
    project: str | None
    label: str
    hint: str
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    created_by: int | None = Field(description="id of the token that created it")
    expires_at: datetime | None
    revoked_at: datetime | None


class WhoAmI(BaseModel):
    role: str
    project: str | None
    token_id: int | None = None
    expires_at: datetime | None = None


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
    # defaults: an explanation written without a placement decision (HA's "restart on h failed",
    # a repair) still renders; a listing never fails on one workload's explanation
    hosts_considered: int = 0
    filters: list[FilterReportOut] = []
    candidates: int = 0
    top: list[CandidateOut] = []
    rule: str = ""
    summary: str = ""


PriorityClassName = Literal["spot", "low", "normal", "high", "system"]  # policies/preemption.py


class WorkloadCreate(_In):
    """Exactly one of `flavor` and `demand`; `group_policy` needs a `group`."""

    model_config = ConfigDict(json_schema_extra={
        "oneOf": _FLAVOR_XOR_DEMAND,
        "anyOf": [{"not": {"required": ["group_policy"]}},
                  {"properties": {"group_policy": {"type": "null"}}},
                  {"required": ["group"], "properties": {"group": {"type": "string"}}}],
    })
    name: Name
    project: Name | None = Field(
        default=None, description="members: their project (implicit); admins: defaults to 'default'")
    flavor: Name | None = None
    demand: Demand | None = None
    kind: Literal["vm", "container"] = "vm"
    priority: Annotated[int, Field(ge=-1000, le=1000), INTEGRAL] = 0
    priority_class: PriorityClassName = Field(
        default="normal", description="spot < low < normal < high < system: when nothing fits, a "
        "class above spot may preempt workloads of lower classes (docs/scheduling.md)")
    group: Name | None = None
    group_policy: GroupPolicyName | None = None
    required_labels: Labels | None = None
    forbidden_labels: Labels | None = None
    pool: Name | None = None
    networks: Annotated[list[Name], Field(max_length=8, description="one NIC per network (no repeats)",
                                          json_schema_extra={"uniqueItems": True})] | None = None
    wait: bool = Field(default=False, description="when nothing fits now, queue the request (202 with the "
                       "queue entry) and create it when capacity frees, in the pool's queue discipline")
    duration_s: Annotated[float, Field(gt=0, le=315_360_000)] | None = Field(
        default=None, description="declared run time in seconds (the sjf discipline serves short ones first)")
    reservation: Amounts | None = Field(default=None, description=RESERVATION_DOC)
    limit: Amounts | None = Field(default=None, description=LIMIT_DOC)
    shares: Shares | None = Field(default=None, description=SHARES_DOC)

    @model_validator(mode="after")
    def _rules(self) -> WorkloadCreate:
        _one_of_flavor_demand(self.flavor, self.demand)
        if self.networks is not None and len(set(self.networks)) != len(self.networks):
            raise ValueError("a network is listed twice; a workload has one NIC per network")
        if self.group_policy is not None and self.group is None:
            raise ValueError("group_policy needs a group")
        return self


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
    gpus: list[GpuShareOut] = Field(default_factory=list, description="the GPU devices it holds")
    priority_class: str = "normal"
    state_reason: str | None = Field(default=None, description="why the system put it in its state "
                                     "(e.g. preempted by which workload)")
    resources: dict[str, ResourceSpecOut] | None = Field(
        default=None, description="declared reservation, limit and shares per resource (its demand is "
        "what the pool's allocation policy set aside); null: none declared")
    sized_by: str | None = Field(
        default=None, description="the allocation policy (min, max, balanced) that sized its claim: the "
        "pool's, or for a request naming no pool the chosen host's pool's; null: nothing declared")
    granted: dict[str, float] | None = Field(
        default=None, description="what its host gives it now per resource (shares under contention; "
        "GET /v1/workloads/{name} on a driver that shares a contended host); null: not reported")


class MigrateRequest(_In):
    host: Name | None = Field(default=None, description="target host; omitted = let placement choose")


class BatchItem(_In):
    """One workload of a batch (exactly one of `flavor` and `demand`). Labels and groups make the
    batch a gang placed by the placement pipeline (all-or-nothing; a hard-affinity group on one
    host); without them the packer places it on the fewest hosts."""

    model_config = ConfigDict(json_schema_extra={
        "oneOf": _FLAVOR_XOR_DEMAND,
        "anyOf": [{"not": {"required": ["group_policy"]}},
                  {"properties": {"group_policy": {"type": "null"}}},
                  {"required": ["group"], "properties": {"group": {"type": "string"}}}],
    })
    name: Name
    flavor: Name | None = None
    demand: Demand | None = None
    kind: Literal["vm", "container"] = "vm"
    priority: Annotated[int, Field(ge=-1000, le=1000), INTEGRAL] = 0
    group: Name | None = None
    group_policy: GroupPolicyName | None = None
    required_labels: Labels | None = None
    forbidden_labels: Labels | None = None
    networks: Annotated[list[Name], Field(max_length=8, description="one NIC per network (no repeats)",
                                          json_schema_extra={"uniqueItems": True})] | None = None
    reservation: Amounts | None = Field(default=None, description=RESERVATION_DOC)
    limit: Amounts | None = Field(default=None, description=LIMIT_DOC)
    shares: Shares | None = Field(default=None, description=SHARES_DOC)

    @model_validator(mode="after")
    def _rules(self) -> BatchItem:
        _one_of_flavor_demand(self.flavor, self.demand)
        if self.networks is not None and len(set(self.networks)) != len(self.networks):
            raise ValueError("a network is listed twice; a workload has one NIC per network")
        if self.group_policy is not None and self.group is None:
            raise ValueError("group_policy needs a group")
        return self


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


class ActionOut(BaseModel):
    """One action of a balancing plan, with its explanation."""

    model_config = ConfigDict(populate_by_name=True)
    kind: Literal["migrate", "restart", "power_on", "power_off", "place"]
    workload: str | None
    from_: str | None = Field(default=None, alias="from")
    to: str | None
    rule: str
    figures: dict[str, float]
    alternatives: list[str]


class PlanOut(BaseModel):
    """A packing plan: one move per workload (from None = new placement; to None = not placed).
    A consolidation plan also names its balancing policy and lists every action it takes."""

    kind: str
    summary: str
    hosts_before: int
    hosts_after: int
    lower_bound: int
    moves: list[MoveOut]
    notes: list[str]
    policy: str | None = None
    actions: list[ActionOut] = Field(default_factory=list)


class WorkloadBatchOut(_Out):
    workloads: list[WorkloadOut]
    unplaced: list[str]
    plan: PlanOut


class ConsolidationRequest(_In):
    max_migrations: Annotated[int, Field(ge=0, le=100_000), INTEGRAL] | None = None
    policy: str = Field(default="pack", max_length=64, pattern=BALANCING_POLICY_PATTERN, description=(
        "balancing policy: pack (fewest active hosts by reservations), spread (imbalance reduction), "
        "adaptive[-safety] (the simulator's default, safety >= 1) or "
        "<thr|iqr|mad|lr|lrr>-<mmt|mu|mc|rs|lp>[-param] on the workloads' recorded utilization"))
    apply: bool = Field(default=False, description="execute the moves (live migrations), not only plan")


class ConsolidationOut(_Out):
    pool: str
    plan: PlanOut
    hosts_emptied: list[str]
    applied: bool
    executed: list[str]
    failed: list[str]


# ---- tasks -------------------------------------------------------------------------------------
TaskState = Literal["queued", "running", "succeeded", "failed", "cancelled", "rolled_back"]


class TaskEntryOut(BaseModel):
    time: str = Field(description="ISO 8601, UTC")
    message: str


class TaskOut(_Out):
    """A long operation (202 answers point here: GET /v1/tasks/{id}). `result` once it succeeded
    (a migration: from, to; a consolidation: plan, executed, failed), `error` once it failed or
    was rolled back; `entries` is its log; `parent` the task that spawned it."""

    id: int
    kind: str
    state: TaskState
    project: str | None
    subject: str
    progress: Annotated[float, Field(ge=0, le=1)]
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    entries: list[TaskEntryOut]
    parent: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


# ---- utilization -------------------------------------------------------------------------------
MAX_EPOCH_S = 4_102_444_800.0  # 2100-01-01
EpochSeconds = Annotated[float, Field(ge=0, le=MAX_EPOCH_S, allow_inf_nan=False,
                                      description="seconds since 1970-01-01 UTC")]


class UtilizationSampleIn(_In):
    workload: Name
    project: Name | None = Field(
        default=None, description="members: their project (implicit); admins: defaults to 'default'")
    time: EpochSeconds | IsoDateTime = Field(description="epoch seconds or ISO 8601 (no offset = UTC)")
    cpu: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False,
                                description="fraction of the workload's vCPU demand in use")]

    @field_validator("time", mode="before")
    @classmethod
    def _seconds_not_millis(cls, v: Any) -> Any:
        """A number must be epoch seconds (a big one is likely milliseconds: say so)."""
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= MAX_EPOCH_S:
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
    severity: Literal["info", "warning", "critical"] = "info"


class Health(BaseModel):
    status: Literal["ok"]
    version: str
