"""The alerts panel's plug: reads `svc.alerts` when the running build has one, else shows nothing.

The alerts service (list and acknowledge; /v1/alerts) is built separately from the dashboard, so the
panel looks for it at run time instead of importing it: `svc.alerts.list_alerts(project=...)` (or
`.list(...)`) returning records with id, severity, kind/subject, message, time and an
acknowledged flag or time; `svc.alerts.ack(id, project=...)` (or `.ack_alert`). The project scope
is the API's (`scope_project`): members see and acknowledge their project's alerts only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from poolvisor.api.auth import scope_project
from poolvisor.domain.errors import NotFoundError
from poolvisor.services import Principal, Services

MAX_SHOWN = 50


@dataclass(frozen=True)
class AlertRow:
    id: Any
    severity: str
    subject: str
    message: str
    time: datetime | None
    acked: bool
    project: str | None
    rule: str = ""
    state: str = ""  # e.g. active / resolved, when the service reports it


def _field(rec: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = rec.get(n) if isinstance(rec, dict) else getattr(rec, n, None)
        if v is not None:
            return v
    return default


def _method(svc: Services, *names: str) -> Callable[..., Any] | None:
    alerts = getattr(svc, "alerts", None)
    if alerts is None:
        return None
    for n in names:
        fn = getattr(alerts, n, None)
        if callable(fn):
            return fn
    return None


def _params(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _call(fn: Callable[..., Any], *args: Any, who: Principal) -> Any:
    """Call with the caller's project scope by keyword (and who acts, when the method asks: `by` /
    `acked_by` as "token/ID", `who` / `principal` as the Principal). A method that cannot scope is
    an admin-only call: a member must not see or touch other projects' alerts through it."""
    project = scope_project(who, None)
    names = _params(fn)
    kw: dict[str, Any] = {}
    if "project" in names:
        kw["project"] = project
    elif project is not None:
        raise NotFoundError("no alerts for this project")
    for n in ("by", "acked_by"):
        if n in names:
            kw[n] = f"token/{who.token_id}"
    for n in ("who", "principal"):
        if n in names:
            kw[n] = who
    return fn(*args, **kw)


def available(svc: Services) -> bool:
    return _method(svc, "list_alerts", "list") is not None


def list_alerts(svc: Services, who: Principal) -> list[AlertRow] | None:
    """The caller's alerts, newest first (None: this build has no alerts service)."""
    fn = _method(svc, "list_alerts", "list")
    if fn is None:
        return None
    try:
        got = _call(fn, who=who)
    except NotFoundError:
        return []
    rows = []
    for a in list(got or [])[:MAX_SHOWN]:
        acked = _field(a, "acknowledged", "acked", "acked_at", "acknowledged_at", default=False)
        rows.append(AlertRow(
            id=_field(a, "id"), severity=str(_field(a, "severity", default="info")),
            subject=str(_field(a, "subject", "kind", "rule", default="")),
            rule=str(_field(a, "rule", "kind", default="")), state=str(_field(a, "state", default="")),
            message=str(_field(a, "message", default="")),
            time=_field(a, "time", "created_at", "raised_at"), acked=bool(acked),
            project=_field(a, "project")))
    return rows


def ack_alert(svc: Services, who: Principal, alert_id: int) -> None:
    fn = _method(svc, "ack", "ack_alert", "acknowledge")
    if fn is None:
        raise NotFoundError("this server has no alerts")
    _call(fn, alert_id, who=who)
