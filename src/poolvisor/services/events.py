"""The audit log: events written by every use case (in its own transaction), read newest first."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.records import EventRecord
from poolvisor.store.rows import EventRow

MAX_EVENTS = 1000


class EventService(ServiceBase):
    """Reading the audit log (writing is ServiceBase._event, inside each use case's transaction)."""

    def list_events(self, project: str | None = None, limit: int = 100) -> list[EventRecord]:
        """Newest first; project None = every event (admins), else that project's events."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
            raise InvalidInputError(f"limit must be 1..{MAX_EVENTS}")

        def tx(s: Session) -> list[EventRecord]:
            q = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
            if project is not None:
                self._project(s, project)
                q = q.where(EventRow.project == project)
            return [EventRecord(e.id, as_utc(e.time), e.kind, e.subject, e.message, e.project, dict(e.data))
                    for e in s.scalars(q)]

        return self._read(tx)
