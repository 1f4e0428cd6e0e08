"""Events: the audit log, queryable (kind, object, project, severity, since) and streamable as
server-sent events; members see their project's events only.

The stream (`GET /v1/events/stream`) sends each new event passing the filters as
`id: N` + `data: {event JSON}`, resumes after `Last-Event-ID` (header, as browsers send it on a
reconnect, or query), and without one starts at the newest event (or, with `since`, first sends
the events from that instant on). It polls the log in short read
transactions (no connection is held between polls), sends a comment line as a heartbeat, checks
the caller's token again at each heartbeat, and ends when the client goes away, the token is
revoked, the server stops, or after MAX_STREAM_S (load balancers dislike endless connections; the
client reconnects with Last-Event-ID and misses nothing). `app.state.event_poll_s` and
`app.state.event_stream_max_s` and `app.state.event_heartbeat_s` override the poll interval, that
lifetime and the heartbeat (tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints

from poolvisor.api.auth import SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import QUERY_INT, IsoDateTime, Name
from poolvisor.api.schemas import EventOut
from poolvisor.services import Services
from poolvisor.services.events import EventFilter

router = APIRouter(prefix="/v1/events", tags=["events"])

_SEG = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
OBJECT_PATTERN = rf"^{_SEG}(/{_SEG}){{0,3}}$"
ObjectRef = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=OBJECT_PATTERN)]
Severity = Literal["info", "warning", "critical"]
MAX_ID = 2**63 - 1
POLL_S, HEARTBEAT_S, RETRY_MS, BATCH = 0.5, 15.0, 2000, 200
MAX_STREAM_S = 300.0  # a connection's lifetime: the client reconnects with Last-Event-ID, seamlessly
SSE = "text/event-stream"
SSE_EVENT = {  # one server-sent event as parsed by a client: data is an EventOut in JSON
    "type": "object", "required": ["data"],
    "properties": {"id": {"type": "string", "pattern": "^[0-9]+$"}, "event": {"enum": ["message", "error"]},
                   "data": {"type": "string", "contentMediaType": "application/json"},
                   "retry": {"type": "integer"}},
}

KindQ = Annotated[Name | None, Query(description="this kind, or any kind under it ('workload')")]
ObjectQ = Annotated[ObjectRef | None, Query(
    alias="object", description="this subject, or any under it ('workload/demo', 'host/h1')")]
ProjectQ = Annotated[Name | None, Query(description="admins: only this project's events")]
SeverityQ = Annotated[Severity | None, Query(description="at least this severity")]


def _filter(svc: Services, who: Who, project: str | None, kind: str | None, subject: str | None,
            severity: str | None, since: datetime | None = None) -> EventFilter:
    scoped = scope_project(who, project)
    if scoped is not None:
        svc.events.check_project(scoped)  # 404 for a project that does not exist
    return EventFilter(scoped, kind, subject, severity, since)


@router.get("", response_model=list[EventOut], responses=errors(401, 404, 422, 503))
def list_events(
    svc: SvcDep, who: Who, project: ProjectQ = None, kind: KindQ = None, subject: ObjectQ = None,
    severity: SeverityQ = None,
    since: Annotated[IsoDateTime | None, Query(description="only events at or after this instant")] = None,
    limit: Annotated[int, Query(ge=1, le=1000), QUERY_INT] = 100,
) -> list[EventOut]:
    """Newest first."""
    flt = _filter(svc, who, project, kind, subject, severity, since)
    return [EventOut.model_validate(e) for e in svc.events.list_events(flt.project, limit, flt)]


def _frame(e: object) -> str:
    body = json.dumps(jsonable_encoder(EventOut.model_validate(e)), separators=(",", ":"))
    return f"id: {e.id}\ndata: {body}\n\n"  # type: ignore[attr-defined]


@router.get("/stream", response_class=StreamingResponse, responses={
    200: {"content": {SSE: {"schema": SSE_EVENT}},
          "description": "server-sent events: `id: N` and `data: {event JSON}` per event; an `error` "
                         "event ends the stream when the token stops being valid"},
    **errors(401, 404, 422, 503)})
async def stream_events(
    request: Request, svc: SvcDep, who: Who, project: ProjectQ = None, kind: KindQ = None,
    subject: ObjectQ = None, severity: SeverityQ = None,
    since: Annotated[IsoDateTime | None, Query(description=(
        "without a resume id: first send the events at or after this instant"))] = None,
    last_event_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description=(
        "resume after this event id (the Last-Event-ID header wins)")), QUERY_INT] = None,
    last_event_header: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> StreamingResponse:
    """New events as they are written (server-sent events)."""
    flt = await anyio.to_thread.run_sync(lambda: _filter(svc, who, project, kind, subject, severity, since))
    start = _resume_point(last_event_header, last_event_id)
    if start is None:
        start = 0 if since is not None else await anyio.to_thread.run_sync(svc.events.last_event_id)
    token = (request.headers.get("authorization") or "").partition(" ")[2].strip()
    stopping: Callable[[], bool] = getattr(request.app.state, "stopping", lambda: False)
    poll_s: float = getattr(request.app.state, "event_poll_s", POLL_S)
    heartbeat_s: float = getattr(request.app.state, "event_heartbeat_s", HEARTBEAT_S)
    end = time.monotonic() + getattr(request.app.state, "event_stream_max_s", MAX_STREAM_S)

    def done() -> bool:
        return stopping() or time.monotonic() > end

    return StreamingResponse(_stream(request, svc, flt, start, token, done, poll_s, heartbeat_s),
                             media_type=SSE,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _resume_point(header: str | None, query: int | None) -> int | None:
    """The header when it is a valid id (a browser echoes what we sent), else the query."""
    if header is not None and header.strip().isdigit() and int(header.strip()) <= MAX_ID:
        return int(header.strip())
    return query


async def _stream(request: Request, svc: Services, flt: EventFilter, after: int, token: str,
                  stopping: Callable[[], bool], poll_s: float, heartbeat_s: float) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    beat = time.monotonic()
    while not stopping():
        evs = await anyio.to_thread.run_sync(partial(svc.events.events_after, after, flt, BATCH))
        for e in evs:
            yield _frame(e)
            after = e.id
        if len(evs) == BATCH:
            continue
        if time.monotonic() - beat >= heartbeat_s:
            beat = time.monotonic()
            who, _ = await anyio.to_thread.run_sync(lambda: svc.auth.token_status(token))
            if who is None:
                yield "event: error\ndata: {\"error\":\"unauthorized\"}\n\n"
                return
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await anyio.sleep(poll_s)
