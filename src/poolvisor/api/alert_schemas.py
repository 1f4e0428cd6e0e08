"""API shapes of alerts (kept apart from api/schemas.py: one module per area)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from poolvisor.api.schemas import _Out

AlertRule = Literal["pool_nearly_full", "host_down", "quota_nearly_exhausted", "sla_violation", "stuck_task"]
AlertState = Literal["active", "resolved"]
Severity = Literal["info", "warning", "critical"]


class AlertOut(_Out):
    id: int
    rule: AlertRule
    subject: str
    project: str | None
    severity: Severity
    state: AlertState
    message: str
    data: dict[str, Any]
    raised_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
