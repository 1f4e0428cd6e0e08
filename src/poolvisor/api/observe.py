"""The outermost middleware: a request id for every request, its latency in the HTTP histogram,
and one access log line.

The id is the client's `X-Request-ID` when sane (observability/logs.py), else a new one; it is
set in the logging context for the whole request (so every log line carries it), echoed in the
`X-Request-ID` response header and added to every error body (api/errors.py). Latency is
labelled by the route *template* (`/v1/workloads/{name}`; `<unmatched>` for paths no route
knows), so a scan of random URLs cannot blow up the number of series.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolvisor.api.errors import error_response
from poolvisor.api.metrics import AppMetrics
from poolvisor.observability.logs import REQUEST_ID, accept_request_id

HEADER = b"x-request-id"
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
access_log = logging.getLogger("poolvisor.access")
log = logging.getLogger("poolvisor.api")


SLOT = "poolvisor.observe"


def route_template(found: dict[str, object]) -> str:
    path = getattr(found.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RouteCapture:
    """Innermost: report the route the router matched to ObserveMiddleware (the middlewares in
    between may pass the router a copy of the scope, where it records the route)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            slot = scope.get(SLOT)
            if isinstance(slot, dict):
                slot["route"] = scope.get("route")


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: AppMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v for k, v in scope.get("headers", ()) if k == HEADER), None)
        try:
            rid = accept_request_id(supplied.decode("ascii") if supplied is not None else None)
        except UnicodeDecodeError:
            rid = accept_request_id(None)
        token = REQUEST_ID.set(rid)
        found: dict[str, object] = {}
        scope = {**scope, SLOT: found}
        status = 500
        t0 = time.perf_counter()

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                headers.append((HEADER, rid.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # answered here, inside the request's context, so the traceback line and the 500 body
            # carry the request id (Starlette's own handler runs outside every middleware)
            if started:
                raise
            log.exception("unexpected error")
            await error_response(500, "internal", "internal error; see the server log")(
                scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - t0
            route = route_template(found)
            method = str(scope.get("method", ""))
            method = method if method in METHODS else "other"
            self.metrics.http_seconds.labels(method=method, route=route, status=str(status)).observe(elapsed)
            access_log.info("%s %s %d %.1f ms", method, scope.get("path", ""), status, elapsed * 1000,
                            extra={"method": method, "path": scope.get("path", ""), "route": route,
                                   "status": status, "duration_ms": round(elapsed * 1000, 3)})
            REQUEST_ID.reset(token)
