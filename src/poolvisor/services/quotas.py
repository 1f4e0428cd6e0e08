"""Per-project quotas (resources and workload count) and per-project creation rate limits.

Admins set them (`set_quota`); members and viewers read their own project's (`get_quota`,
`usage`). Enforcement is `verify`, called by the ledger inside the transaction that claims the
allocation (services/ledger.py, batch.py): it first bumps the project's quota row, which locks it
(a PostgreSQL row lock; SQLite's single writer), then sums the project's allocations as committed
plus this transaction's own, and rolls the claim back with QuotaExceededError when a limit is
broken. So concurrent creations, on any number of processes sharing the database, can never
together exceed a quota. A project without limits is not locked (no row, or `enforced` false).

The rate limits are only stored here; api/ratelimit.py enforces them per process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError, QuotaExceededError
from poolvisor.domain.resources import MAX_QUANTITY
from poolvisor.policies.quota import WORKLOADS, check, remaining
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.placement_cache import resource_names
from poolvisor.services.records import HOLDING_STATES
from poolvisor.store.rows import AllocationRow, ProjectQuotaRow, ProjectRow, WorkloadRow

MAX_RATE_PER_S = 1e6
MAX_BURST = 1_000_000


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `rate_per_s` tokens added per second, at most `burst` held."""

    rate_per_s: float
    burst: int


@dataclass(frozen=True)
class QuotaRecord:
    project: str
    limits: dict[str, float]
    rate_limit: RateLimit | None  # None: the server's default applies
    updated_at: datetime | None


@dataclass(frozen=True)
class UsageRecord:
    """What a project holds now (every resource it holds or has a limit on, and `workloads`), its
    limits and what is left under each."""

    project: str
    used: dict[str, float]
    limits: dict[str, float]
    available: dict[str, float]
    rate_limit: RateLimit | None


def check_rate_limit(rate: RateLimit | None) -> RateLimit | None:
    if rate is None:
        return None
    r, b = rate.rate_per_s, rate.burst
    if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) \
            or not 0 < r <= MAX_RATE_PER_S:
        raise InvalidInputError(f"rate_per_s must be a number in (0, {MAX_RATE_PER_S:g}]")
    if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BURST:
        raise InvalidInputError(f"burst must be an integer in 1..{MAX_BURST}")
    return RateLimit(float(r), int(b))


_QUOTAS = ProjectQuotaRow.__table__
assert isinstance(_QUOTAS, Table)
# built once and run on the session's connection: verify runs in every create's claim and preview
# in every create's resolve (building an ORM statement and its cache key cost more than running it)
_LOCK_LIMITS = (update(_QUOTAS)
                .where(_QUOTAS.c.project_id == bindparam("p"), _QUOTAS.c.enforced.is_(True))
                .values(generation=_QUOTAS.c.generation + 1)
                .returning(_QUOTAS.c.limits))
# a batch of claims (claim_batch.py) locks its projects' quotas first, in project-id order, as its
# hosts' rows: verify() then finds them locked, and two replicas' batches cannot deadlock on them
_LOCK_ORDERED = (select(_QUOTAS.c.project_id)
                 .where(_QUOTAS.c.project_id.in_(bindparam("ps", expanding=True)),
                        _QUOTAS.c.enforced.is_(True))
                 .order_by(_QUOTAS.c.project_id).with_for_update())
_LIMITS = select(_QUOTAS.c.enforced, _QUOTAS.c.limits).where(_QUOTAS.c.project_id == bindparam("p"))


def project_usage(s: Session, project_id: int) -> dict[str, float]:
    """Sum of the project's allocations per resource (as this transaction sees them) and the
    number of its workloads holding capacity (`workloads`)."""
    rows = s.execute(select(AllocationRow.resource, func.sum(AllocationRow.amount))
                     .join(WorkloadRow, WorkloadRow.id == AllocationRow.workload_id)
                     .where(WorkloadRow.project_id == project_id)
                     .group_by(AllocationRow.resource)).all()
    used = {str(r): float(a or 0.0) for r, a in rows}
    used[WORKLOADS] = float(s.scalar(select(func.count()).select_from(WorkloadRow).where(
        WorkloadRow.project_id == project_id, WorkloadRow.state.in_(HOLDING_STATES))) or 0)
    return used


def verify(s: Session, project_id: int, requested: Mapping[str, float], workloads: int, *,
           project: str | None = None) -> None:
    """Inside the claiming transaction, after the claim's allocations and workload rows are
    written: lock the project's quota (when it has limits) and raise QuotaExceededError (rolling
    the claim back) if the project now holds more than a limit allows."""
    s.flush()
    limits = s.connection().execute(_LOCK_LIMITS, {"p": project_id}).scalar()
    if not limits:
        return
    want = {str(k): float(v) for k, v in requested.items()}
    want[WORKLOADS] = float(workloads)
    excess = check({str(k): float(v) for k, v in limits.items()}, project_usage(s, project_id), want)
    if excess is not None:
        name = project or s.scalar(select(ProjectRow.name).where(ProjectRow.id == project_id)) or "?"
        raise QuotaExceededError(excess.describe(name), excess.as_detail(name))


def lock_in_order(s: Session, project_ids: Iterable[int]) -> None:
    """PostgreSQL: lock the enforced quotas of these projects in project-id order (a transaction
    that claims for several projects takes them before its claims' `verify`)."""
    ids = sorted(set(project_ids))
    if ids:
        s.connection().execute(_LOCK_ORDERED, {"ps": ids}).all()


def preview(s: Session, project_id: int | None, requested: Mapping[str, float], workloads: int, *,
            project: str) -> None:
    """What `verify` would say of this request now, for dry runs: reads only, locks nothing (so a
    concurrent creation may still take the room before the real request)."""
    if project_id is None:
        return  # a project the request would create has no quota yet
    row = s.connection().execute(_LIMITS, {"p": project_id}).first()
    if row is None or not row.enforced or not row.limits:
        return
    preview_limits(s, project_id, row.limits, requested, workloads, project=project)


def preview_limits(s: Session, project_id: int, limits: Mapping[str, float], requested: Mapping[str, float],
                   workloads: int, *, project: str) -> None:
    """preview() with the project's enforced limits already read (a create reads them with the rest
    of its request in one statement: workloads.py `_REQUEST`)."""
    if not limits:
        return
    want = {str(k): float(v) for k, v in requested.items() if float(v) > 0}
    want[WORKLOADS] = float(workloads)
    used = project_usage(s, project_id)
    after = {k: used.get(k, 0.0) + want.get(k, 0.0) for k in set(used) | set(want)}
    excess = check({str(k): float(v) for k, v in limits.items()}, after, want)
    if excess is not None:
        raise QuotaExceededError(excess.describe(project), excess.as_detail(project))


class QuotaService(ServiceBase):
    """Set and read project quotas and rate limits; report a project's usage."""

    def set_quota(self, project: str, limits: Mapping[str, float],
                  rate_limit: RateLimit | None = None) -> QuotaRecord:
        """Replace the project's quota: `limits` (an empty map: no quota) and its rate limit (None:
        the server's default). A limit below the current use is allowed: it refuses new claims and
        takes nothing away."""
        rate = check_rate_limit(rate_limit)
        clean: dict[str, float] = {}
        for k, v in limits.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or not 0 <= v <= MAX_QUANTITY:
                raise InvalidInputError(f"quota {k!r}: a limit is a number in 0..{MAX_QUANTITY:g}")
            if k == WORKLOADS and float(v) != int(v):
                raise InvalidInputError("quota 'workloads': a count is a whole number")
            clean[str(k)] = float(v)

        def tx(s: Session) -> QuotaRecord:
            p = self._project(s, project)
            known = set(resource_names(s).names) | {WORKLOADS}
            unknown = sorted(set(clean) - known)
            if unknown:
                raise InvalidInputError(f"unknown resource {unknown[0]!r} in the quota; allowed: "
                                        f"{', '.join(sorted(known))}")
            row = s.get(ProjectQuotaRow, p.id)
            if row is None:
                row = ProjectQuotaRow(project_id=p.id, generation=0)
                s.add(row)
            row.limits, row.enforced = dict(clean), bool(clean)
            row.rate_per_s = rate.rate_per_s if rate is not None else None
            row.rate_burst = rate.burst if rate is not None else None
            row.updated_at = datetime.now(UTC)
            s.flush()
            self._event(s, "project.quota_set", f"project/{project}",
                        f"quota of project {project} set: {_describe(clean, rate)}", project=project,
                        data={"limits": clean, "rate_limit": None if rate is None else
                              {"rate_per_s": rate.rate_per_s, "burst": rate.burst}})
            return _record(project, row)

        return self._write(tx)

    def get_quota(self, project: str) -> QuotaRecord:
        def tx(s: Session) -> QuotaRecord:
            p = self._project(s, project)
            return _record(project, s.get(ProjectQuotaRow, p.id))

        return self._read(tx)

    def usage(self, project: str) -> UsageRecord:
        def tx(s: Session) -> UsageRecord:
            p = self._project(s, project)
            q = _record(project, s.get(ProjectQuotaRow, p.id))
            used = project_usage(s, p.id)
            for k in q.limits:
                used.setdefault(k, 0.0)
            return UsageRecord(project, dict(sorted(used.items())), q.limits, remaining(q.limits, used),
                               q.rate_limit)

        return self._read(tx)

    def enforced_usage(self) -> list[tuple[str, dict[str, float], dict[str, float]]]:
        """(project, used, limits) of every project with a quota: the alert rule "quota nearly
        exhausted" reads it (services/alerts.py `quota_source`)."""

        def tx(s: Session) -> list[tuple[str, dict[str, float], dict[str, float]]]:
            rows = s.execute(select(ProjectRow.id, ProjectRow.name, ProjectQuotaRow.limits)
                             .join(ProjectQuotaRow, ProjectQuotaRow.project_id == ProjectRow.id)
                             .where(ProjectQuotaRow.enforced.is_(True)).order_by(ProjectRow.name)).all()
            return [(name, project_usage(s, pid), {str(k): float(v) for k, v in (limits or {}).items()})
                    for pid, name, limits in rows]

        return self._read(tx)

    def rate_limits(self) -> dict[str, RateLimit]:
        """Every project's own rate limit (projects without one use the server's default)."""

        def tx(s: Session) -> dict[str, RateLimit]:
            rows = s.execute(select(ProjectRow.name, ProjectQuotaRow.rate_per_s, ProjectQuotaRow.rate_burst)
                             .join(ProjectQuotaRow, ProjectQuotaRow.project_id == ProjectRow.id)
                             .where(ProjectQuotaRow.rate_per_s.is_not(None))).all()
            return {n: RateLimit(float(r), int(b or 1)) for n, r, b in rows if r is not None}

        return self._read(tx)


def _record(project: str, row: ProjectQuotaRow | None) -> QuotaRecord:
    if row is None:
        return QuotaRecord(project, {}, None, None)
    r = row.rate_per_s
    rate = RateLimit(float(r), int(row.rate_burst or 1)) if r is not None else None
    return QuotaRecord(project, {str(k): float(v) for k, v in sorted(row.limits.items())}, rate,
                       as_utc(row.updated_at))


def _describe(limits: Mapping[str, float], rate: RateLimit | None) -> str:
    parts = [f"{k}={v:g}" for k, v in sorted(limits.items())] or ["no limits"]
    if rate is not None:
        parts.append(f"rate {rate.rate_per_s:g}/s burst {rate.burst}")
    return ", ".join(parts)
