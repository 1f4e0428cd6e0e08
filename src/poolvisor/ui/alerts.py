"""The dashboard's alerts panel: the caller's alerts from `svc.alerts`, and acknowledging one.

The project scope is the API's (`scope_project`, as in api/routes/alerts.py): members see and
acknowledge their project's alerts only; fleet alerts (pools, hosts, SLA) are for admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from poolvisor.api.auth import scope_project
from poolvisor.services import Principal, Services

MAX_SHOWN = 50


@dataclass(frozen=True)
class AlertRow:
    """One line of the panel."""

    id: int
    severity: str
    subject: str
    message: str
    time: datetime
    acked: bool
    project: str | None
    rule: str
    state: str


def list_alerts(svc: Services, who: Principal) -> list[AlertRow]:
    """The caller's active alerts, newest first."""
    return [AlertRow(a.id, a.severity, a.subject, a.message, a.raised_at, a.acked_at is not None, a.project,
                     a.rule, a.state)
            for a in svc.alerts.list_alerts(scope_project(who, None), limit=MAX_SHOWN)]


def ack_alert(svc: Services, who: Principal, alert_id: int) -> None:
    """Acknowledge as the API does (404 outside the caller's project, 409 once resolved)."""
    svc.alerts.ack(alert_id, scope_project(who, None), f"{who.role}-token-{who.token_id}")
