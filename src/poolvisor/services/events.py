"""The audit log: events written by every use case (in its own transaction), read newest first,
filtered (kind, object, project, severity, since), or read forward from an id (the event stream).

Filters: `kind` matches the kind or any kind under it (`workload` matches `workload.created`);
`subject` (the API's `object`) matches the subject or any subject under it (`workload/demo`
matches `workload/demo/web1`); `severity` is a minimum (`warning` = warning and critical);
`since` keeps events at or after that instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.observability.severity import SEVERITIES
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.records import EventRecord
from poolvisor.store.rows import EventRow

MAX_EVENTS = 1000


@dataclass(frozen=True)
class EventFilter:
    """Which events: project None = every project's and the fleet's (admins); else that project's."""

    project: str | None = None
    kind: str | None = None
    subject: str | None = None
    severity: str | None = None
    since: datetime | None = None

    def where(self, q: Any) -> Any:
        if self.project is not None:
            q = q.where(EventRow.project == self.project)
        if self.kind is not None:
            q = q.where(or_(EventRow.kind == self.kind, EventRow.kind.startswith(self.kind + ".",
                                                                                  autoescape=True)))
        if self.subject is not None:
            q = q.where(or_(EventRow.subject == self.subject,
                            EventRow.subject.startswith(self.subject + "/", autoescape=True)))
        if self.severity is not None:
            if self.severity not in SEVERITIES:
                raise InvalidInputError(f"severity must be one of {', '.join(SEVERITIES)}")
            q = q.where(EventRow.severity.in_(SEVERITIES[SEVERITIES.index(self.severity):]))
        if self.since is not None:
            since = self.since if self.since.tzinfo is not None else self.since.replace(tzinfo=UTC)
            q = q.where(EventRow.time >= since.astimezone(UTC))
        return q


def _record(e: EventRow) -> EventRecord:
    return EventRecord(e.id, as_utc(e.time), e.kind, e.subject, e.message, e.project, dict(e.data),
                       e.severity)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
        raise InvalidInputError(f"limit must be 1..{MAX_EVENTS}")


class EventService(ServiceBase):
    """Reading the audit log (writing is ServiceBase._event, inside each use case's transaction)."""

    def list_events(self, project: str | None = None, limit: int = 100,
                    where: EventFilter | None = None) -> list[EventRecord]:
        """Newest first; project None = every event (admins), else that project's events (404 if
        the project does not exist). `where` narrows further (its project is replaced)."""
        _check_limit(limit)
        flt = EventFilter(project, *(_rest(where)))

        def tx(s: Session) -> list[EventRecord]:
            if project is not None:
                self._project(s, project)
            q = flt.where(select(EventRow)).order_by(EventRow.id.desc()).limit(limit)
            return [_record(e) for e in s.scalars(q)]

        return self._read(tx)

    def events_after(self, after: int, where: EventFilter, limit: int = MAX_EVENTS) -> list[EventRecord]:
        """Oldest first: the events with an id above `after` that pass `where` (the stream's poll:
        one short read transaction, so an idle stream holds no connection)."""
        _check_limit(limit)
        q = where.where(select(EventRow).where(EventRow.id > after)).order_by(EventRow.id).limit(limit)
        return self._read(lambda s: [_record(e) for e in s.scalars(q)])

    def last_event_id(self) -> int:
        """The newest event's id (0 when the log is empty): where a new stream starts."""
        return self._read(lambda s: s.scalar(select(EventRow.id).order_by(EventRow.id.desc()).limit(1)) or 0)

    def check_project(self, project: str) -> None:
        """NotFoundError unless the project exists."""
        self._read(lambda s: self._project(s, project))


def _rest(where: EventFilter | None) -> tuple[Any, ...]:
    w = where or EventFilter()
    return (w.kind, w.subject, w.severity, w.since)
