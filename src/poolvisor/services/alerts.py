"""Alerts: conditions the rules (observability/rules.py) find on the live pool, kept as rows that
are raised once, updated while the condition lasts, resolved when it clears, and acknowledged.

`evaluate()` reads the numbers the rules need (pools, hosts with their measured use, active
tasks, and quota usage when a quota source is plugged in), then, in one write transaction,
compares the findings with the active alerts: a new finding raises an alert and writes an
`alert.raised` event with the alert's severity; a finding that persists updates its alert (an
`alert.escalated` event when the severity changes); an active alert without a finding is resolved
(`alert.resolved`). One active alert per (rule, subject) is enforced by a unique key, so two
replicas evaluating at once never duplicate one (the loser retries and sees the winner's row).

Scope: an alert about a project (quota, a project's stuck task) is visible to that project's
members; fleet alerts (pools, hosts, SLA) to admins only. `poolvisor serve` evaluates every
`--alert-interval` seconds (AlertLoop, on the clock core's WallClock and Loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.clock.background import BackgroundLoop
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.observability import rules
from poolvisor.observability.rules import Finding, Thresholds
from poolvisor.observability.severity import SEVERITIES
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.catalog import CatalogService
from poolvisor.services.context import ServiceContext
from poolvisor.services.hosts import HostService
from poolvisor.services.records import TASK_ACTIVE
from poolvisor.store.retry import Stale
from poolvisor.store.rows import AlertRow, TaskRow

log = logging.getLogger("poolvisor.alerts")
ACTIVE, RESOLVED = "active", "resolved"
ALERT_STATES = (ACTIVE, RESOLVED)
MAX_ALERTS = 1000
DEFAULT_INTERVAL_S = 30.0
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 3600.0

# (project, usage, limit) per project with quotas: what the quota service reports
QuotaSource = Callable[[], Iterable[tuple[str, Mapping[str, float], Mapping[str, float]]]]


@dataclass(frozen=True)
class AlertRecord:
    id: int
    rule: str
    subject: str
    project: str | None
    severity: str
    state: str
    message: str
    data: dict[str, Any]
    raised_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation did (alert ids)."""

    raised: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    active: int = 0


def _record(a: AlertRow) -> AlertRecord:
    return AlertRecord(a.id, a.rule, a.subject, a.project, a.severity, a.state, a.message, dict(a.data),
                       as_utc(a.raised_at), as_utc(a.updated_at),
                       as_utc(a.resolved_at) if a.resolved_at is not None else None,
                       as_utc(a.acked_at) if a.acked_at is not None else None, a.acked_by)


class AlertService(ServiceBase):
    """Evaluate the rules, keep the alerts, list and acknowledge them (the API and the web UI)."""

    def __init__(self, ctx: ServiceContext, catalog: CatalogService, hosts: HostService) -> None:
        super().__init__(ctx)
        self.catalog = catalog
        self.hosts = hosts
        self.thresholds = Thresholds()
        self.quota_source: QuotaSource | None = None  # QuotaService.enforced_usage (services/facade.py)

    # ---- evaluation ---------------------------------------------------------------------------
    def findings(self, now: datetime | None = None) -> list[Finding]:
        """What the rules find now (no write)."""
        now = now or datetime.now(UTC)
        t = self.thresholds
        out: list[Finding | None] = []
        for p in self.catalog.list_pools():
            out.append(rules.pool_nearly_full(p.name, p.allocated, p.capacity, t))
        for h in self.hosts.list_hosts():
            out.append(rules.host_down(h.name, h.state))
            if h.used is not None and h.state != "down":
                out.append(rules.sla_violation(h.name, h.used, h.capacity, t))
        if self.quota_source is not None:
            for owner, usage, limit in self.quota_source():
                out.append(rules.quota_nearly_exhausted(owner, usage, limit, t))
        for tid, kind, subject, project, state, created, expires in self._read(
                lambda s: s.execute(select(TaskRow.id, TaskRow.kind, TaskRow.subject, TaskRow.project,
                                           TaskRow.state, TaskRow.created_at, TaskRow.lease_expires)
                                    .where(TaskRow.state.in_(TASK_ACTIVE))).all()):
            expired = (now - as_utc(expires)).total_seconds() if expires is not None else None
            out.append(rules.stuck_task(tid, kind, subject, project, state,
                                        (now - as_utc(created)).total_seconds(),
                                        expired if expired is not None and expired > 0 else None, t))
        return [f for f in out if f is not None]

    def evaluate(self, now: datetime | None = None) -> Evaluation:
        """Raise, update and resolve alerts to match the findings now."""
        found = {f.key: f for f in self.findings(now)}
        return self._write(lambda s: self._apply(s, found))

    def _apply(self, s: Session, found: dict[str, Finding]) -> Evaluation:
        now = datetime.now(UTC)
        ev = Evaluation()
        active = {a.open_key: a for a in s.scalars(select(AlertRow).where(AlertRow.state == ACTIVE))}
        for key, a in active.items():
            f = found.get(key or "")
            if f is None:
                a.state, a.open_key, a.resolved_at, a.updated_at = RESOLVED, None, now, now
                self._event(s, "alert.resolved", a.subject, f"resolved: {a.message}", project=a.project,
                            data={"alert": a.id, "rule": a.rule}, severity="info")
                ev.resolved.append(a.id)
                continue
            if f.severity != a.severity:
                self._event(s, "alert.escalated" if _rank(f.severity) > _rank(a.severity) else "alert.eased",
                            a.subject, f.message, project=a.project, severity=f.severity,
                            data={"alert": a.id, "rule": a.rule, "from": a.severity})
                ev.escalated.append(a.id)
            a.severity, a.message, a.data, a.updated_at = f.severity, f.message, f.data, now
        for key, f in found.items():
            if key in active:
                continue
            row = AlertRow(rule=f.rule, subject=f.subject, project=f.project, severity=f.severity,
                           state=ACTIVE, message=f.message, data=f.data, open_key=key, raised_at=now,
                           updated_at=now)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Stale() from None  # another replica raised it meanwhile: retry sees its row
            self._event(s, "alert.raised", f.subject, f.message, project=f.project, severity=f.severity,
                        data={"alert": row.id, "rule": f.rule, **f.data})
            ev.raised.append(row.id)
        return Evaluation(ev.raised, ev.resolved, ev.escalated, len(found))

    # ---- queries and acknowledgement ----------------------------------------------------------
    def list_alerts(self, project: str | None = None, state: str | None = ACTIVE, severity: str | None = None,
                    rule: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """Newest first. project None = every alert (admins), else that project's alerts; state
        None = active and resolved; severity = at least that severity."""
        if state is not None and state not in ALERT_STATES:
            raise InvalidInputError(f"state must be one of {', '.join(ALERT_STATES)}")
        if severity is not None and severity not in SEVERITIES:
            raise InvalidInputError(f"severity must be one of {', '.join(SEVERITIES)}")
        if rule is not None and rule not in rules.RULES:
            raise InvalidInputError(f"rule must be one of {', '.join(rules.RULES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_ALERTS:
            raise InvalidInputError(f"limit must be 1..{MAX_ALERTS}")
        q = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
        if project is not None:
            q = q.where(AlertRow.project == project)
        if state is not None:
            q = q.where(AlertRow.state == state)
        if severity is not None:
            q = q.where(AlertRow.severity.in_(SEVERITIES[SEVERITIES.index(severity):]))
        if rule is not None:
            q = q.where(AlertRow.rule == rule)
        return self._read(lambda s: [_record(a) for a in s.scalars(q)])

    def get_alert(self, alert_id: int, project: str | None = None) -> AlertRecord:
        return self._read(lambda s: _record(self._alert(s, alert_id, project)))

    def ack(self, alert_id: int, project: str | None = None, by: str = "") -> AlertRecord:
        """Acknowledge an active alert (idempotent: a second ack keeps the first's time and author).
        404 outside the caller's project; 409 once resolved."""

        def tx(s: Session) -> AlertRecord:
            a = self._alert(s, alert_id, project)
            if a.state != ACTIVE:
                raise ConflictError(f"alert {alert_id} is resolved; there is nothing to acknowledge")
            if a.acked_at is None:
                a.acked_at, a.acked_by = datetime.now(UTC), by[:63] or None
                self._event(s, "alert.acknowledged", a.subject, f"acknowledged: {a.message}",
                            project=a.project, data={"alert": a.id, "rule": a.rule, "by": a.acked_by},
                            severity="info")
                s.flush()
            return _record(a)

        return self._write(tx)

    def active_counts(self) -> list[tuple[str, str, str | None]]:
        """(rule, severity, project) of each active alert (for /metrics)."""
        return self._read(lambda s: [(r, sev, p) for r, sev, p in s.execute(
            select(AlertRow.rule, AlertRow.severity, AlertRow.project).where(AlertRow.state == ACTIVE))])

    def count_active(self, project: str | None = None) -> int:
        q = select(func.count()).select_from(AlertRow).where(AlertRow.state == ACTIVE)
        if project is not None:
            q = q.where(AlertRow.project == project)
        return int(self._read(lambda s: s.scalar(q)) or 0)

    @staticmethod
    def _alert(s: Session, alert_id: int, project: str | None) -> AlertRow:
        a = s.get(AlertRow, alert_id)
        if a is None or (project is not None and a.project != project):
            raise NotFoundError(f"alert {alert_id} not found")
        return a


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float) \
            or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        raise InvalidInputError(f"alert interval must be {MIN_INTERVAL_S:g}..{MAX_INTERVAL_S:g} seconds")
    return float(interval)


class AlertLoop:
    """`poolvisor serve`'s periodic evaluation (a BackgroundLoop: its own WallClock and thread),
    only while `is_leader()`. A failing evaluation (database unavailable) is retried at the next tick."""

    def __init__(self, alerts: AlertService, interval: float = DEFAULT_INTERVAL_S, *,
                 is_leader: Callable[[], bool] | None = None) -> None:
        self.alerts = alerts
        self.runner = BackgroundLoop("alerts", self._step, check_interval(interval), is_leader=is_leader,
                                     what="alert evaluation", log=log)
        self.clock, self.loop = self.runner.clock, self.runner.loop

    def _step(self, _t: float) -> None:
        ev = self.alerts.evaluate()
        for what, ids in (("raised", ev.raised), ("resolved", ev.resolved)):
            if ids:
                log.info("alerts %s: %s", what, ", ".join(map(str, ids)))

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()
