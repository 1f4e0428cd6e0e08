"""HA (admin only): what the HA loop sees (hosts' heartbeats, failures handled with their times,
workloads waiting to restart) and the admission control settings, global or per pool."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.fields import (
    INTEGRAL,
    MAX_MAP_ENTRIES,
    Name,
    NamePath,
    ResourceName,
    StrictModel,
    TypedMap,
)
from poolvisor.policies.admission import MAX_TOLERATE

router = APIRouter(prefix="/v1/ha", tags=["ha"])
Percent = Annotated[float, Field(ge=0, lt=100, allow_inf_nan=False)]


class AdmissionPolicyOut(BaseModel):
    tolerate_failures: int
    reserve_percent: dict[str, float]


class AdmissionOut(BaseModel):
    """`global` applies to workloads without a pool and to pools without a policy of their own."""

    global_: AdmissionPolicyOut = Field(alias="global", serialization_alias="global")
    pools: dict[str, AdmissionPolicyOut]


class AdmissionIn(StrictModel):
    tolerate_failures: Annotated[int, Field(ge=0, le=MAX_TOLERATE), INTEGRAL] = Field(
        default=0, description="host failures whose workloads must still fit (0: none)")
    reserve_percent: Annotated[dict[ResourceName, Percent], Field(max_length=MAX_MAP_ENTRIES), TypedMap()] = \
        Field(default_factory=dict, description="percent of capacity kept free, per resource")
    pool: Name | None = Field(default=None, description="this pool's policy (omitted: the global one)")


class HeadroomOut(BaseModel):
    limit: float
    allocated: float
    headroom: float


class HostWatchOut(BaseModel):
    host: str
    status: str = Field(description="ok, suspect, fence_failed or fenced")
    missed: int
    fence_reason: str | None


class PendingOut(BaseModel):
    workload: str
    priority: int
    reason: str


class FailureOut(BaseModel):
    """Times in seconds on the HA loop's clock; restore_s: first missed heartbeat to every
    workload of the host running elsewhere (None while some wait)."""

    host: str
    first_missed_at: float
    declared_failed_at: float
    detect_s: float
    workloads: int
    restarted: int
    restored_at: float | None
    restore_s: float | None


class HaSettingsOut(BaseModel):
    interval_s: float
    suspect_after: int
    fail_after: int


class PoolAdmissionOut(BaseModel):
    policy: AdmissionPolicyOut
    headroom: dict[str, HeadroomOut]


class AdmissionStatusOut(BaseModel):
    global_: AdmissionPolicyOut = Field(alias="global", serialization_alias="global")
    headroom: dict[str, HeadroomOut]
    pools: dict[str, PoolAdmissionOut]


class HaStatusOut(BaseModel):
    leader: bool
    steps: int
    settings: HaSettingsOut
    hosts: list[HostWatchOut]
    pending: list[PendingOut]
    failures: list[FailureOut]
    admission: AdmissionStatusOut


@router.get("", response_model=HaStatusOut, response_model_by_alias=True, responses=errors(401, 503))
def ha_status(svc: SvcDep, who: Who) -> Any:
    """Hosts' heartbeat status, host failures handled (detection and restore times), workloads
    waiting to restart with their reason (a member's or viewer's project's only), admission
    control with the headroom left."""
    st = svc.ha.status()
    if who.project is not None:
        st["pending"] = [p for p in st["pending"] if p["workload"].split("/", 1)[0] == who.project]
    return HaStatusOut.model_validate(st)


@router.get("/admission", response_model=AdmissionOut, response_model_by_alias=True,
            responses=errors(401, 503))
def get_admission(svc: SvcDep, _: Who) -> Any:
    return AdmissionOut.model_validate(svc.ha.admission_settings())


@router.put("/admission", response_model=AdmissionOut, response_model_by_alias=True,
            responses=errors(401, 403, 404, 413, 422, 503))
def set_admission(body: AdmissionIn, svc: SvcDep, _: Admin) -> Any:
    """Set the global policy, or a pool's (`pool`), which then replaces the global one there.
    Creations that would break it are refused with 409 `admission_refused`."""
    return AdmissionOut.model_validate(svc.ha.set_admission(body.tolerate_failures, body.reserve_percent,
                                                            body.pool))


@router.delete("/admission/pools/{name}", status_code=204, responses=errors(401, 403, 404, 422, 503))
def clear_pool_admission(name: NamePath, svc: SvcDep, _: Admin) -> Response:
    """The pool follows the global policy again."""
    svc.ha.clear_pool_admission(name)
    return Response(status_code=204)
