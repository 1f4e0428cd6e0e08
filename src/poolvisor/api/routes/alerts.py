"""Alerts: what the rules found (pool nearly full, host down, quota nearly exhausted, SLA
violation, stuck task), active or resolved, and their acknowledgement. A member sees and
acknowledges its project's alerts only (another's is not found); fleet alerts are admins'."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from poolvisor.api.alert_schemas import AlertOut, AlertRule, Severity
from poolvisor.api.auth import SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import QUERY_INT, Name

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
MAX_ID = 2**63 - 1
AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="alert id"), QUERY_INT]


@router.get("", response_model=list[AlertOut], responses=errors(401, 404, 422, 503))
def list_alerts(
    svc: SvcDep, who: Who,
    state: Annotated[Literal["active", "resolved", "all"], Query(description="which alerts")] = "active",
    severity: Annotated[Severity | None, Query(description="at least this severity")] = None,
    rule: Annotated[AlertRule | None, Query(description="only this rule's alerts")] = None,
    project: Annotated[Name | None, Query(description="admins: only this project's alerts")] = None,
    limit: Annotated[int, Query(ge=1, le=1000), QUERY_INT] = 100,
) -> list[AlertOut]:
    """Newest first."""
    scoped = scope_project(who, project)
    if scoped is not None:
        svc.events.check_project(scoped)  # 404 for a project that does not exist
    found = svc.alerts.list_alerts(scoped, None if state == "all" else state, severity, rule, limit)
    return [AlertOut.model_validate(a) for a in found]


@router.get("/{alert_id}", response_model=AlertOut, responses=errors(401, 404, 422, 503))
def get_alert(alert_id: AlertId, svc: SvcDep, who: Who) -> AlertOut:
    return AlertOut.model_validate(svc.alerts.get_alert(alert_id, scope_project(who, None)))


@router.post("/{alert_id}/ack", response_model=AlertOut, responses=errors(401, 404, 409, 413, 422, 503))
def ack_alert(alert_id: AlertId, svc: SvcDep, who: Who) -> AlertOut:
    """Acknowledge an active alert (a second acknowledgement changes nothing); 409 once resolved."""
    by = f"{who.role}-token-{who.token_id}"
    return AlertOut.model_validate(svc.alerts.ack(alert_id, scope_project(who, None), by))
