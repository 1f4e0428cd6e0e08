"""Events: the audit log; members see their project's events only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from poolvisor.api.auth import SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import QUERY_INT, Name
from poolvisor.api.schemas import EventOut

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get("", response_model=list[EventOut], responses=errors(401, 404, 422, 503))
def list_events(
    svc: SvcDep, who: Who,
    project: Annotated[Name | None, Query(description="admins: only this project's events")] = None,
    limit: Annotated[int, Query(ge=1, le=1000), QUERY_INT] = 100,
) -> list[EventOut]:
    return [EventOut.model_validate(e) for e in svc.events.list_events(scope_project(who, project), limit)]
