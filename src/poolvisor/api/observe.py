"""The API's one middleware (the edge): everything a request needs before and after its route,
in a single pure-ASGI layer instead of seven nested ones.

For every HTTP request, in order:
- a request id: the client's `X-Request-ID` when sane (observability/logs.py), else a new one; set
  in the logging context for the whole request (so every log line carries it), echoed in the
  `X-Request-ID` response header and added to every error body (api/errors.py);
- the routing path rebuilt from `raw_path`, an encoded slash kept inside its segment (api/rawpath.py);
- the body limit of POST, PUT and PATCH: an oversize body is a 413 before any handler parses it
  (api/limits.py);
- what FastAPI's own layers did: the exception handlers for what the router raises (404, 405), the
  AsyncExitStack FastAPI's request handler expects, and a 500 with the request id for an
  unexpected exception (logged with its traceback);
- after the answer: its latency in the HTTP histogram, labelled by the route *template*
  (`/v1/workloads/{name}`; `<unmatched>` for paths no route knows, so a scan of random URLs cannot
  blow up the number of series), and one access log line (built only when the logger is enabled).

`PoolvisorAPI` (api/routing.py) builds its middleware stack from this layer and the route index.
"""

from __future__ import annotations

import logging
import time
from contextlib import AsyncExitStack
from typing import Any

from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolvisor.api.errors import error_response
from poolvisor.api.limits import (
    BODY_METHODS,
    BULK_MAX_BODY,
    DEFAULT_MAX_BODY,
    DISCONNECTED,
    body_limit,
    read_body,
)
from poolvisor.api.metrics import AppMetrics
from poolvisor.api.rawpath import routing_path
from poolvisor.observability.logs import REQUEST_ID, accept_request_id

HEADER = b"x-request-id"
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ASTACK = "fastapi_middleware_astack"  # FastAPI's request handler asserts it is in the scope
HANDLERS = "starlette.exception_handlers"  # where Starlette's request wrapper finds the handlers
access_log = logging.getLogger("poolvisor.access")
log = logging.getLogger("poolvisor.api")


def route_template(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def split_handlers(handlers: dict[Any, Any]) -> tuple[dict[Any, Any], dict[int, Any]]:
    """(handlers by exception class, handlers by HTTP status), as Starlette's ExceptionMiddleware
    keeps them; 500 and Exception are this layer's own 500 path."""
    by_class = {k: v for k, v in handlers.items() if isinstance(k, type) and k is not Exception}
    by_status = {k: v for k, v in handlers.items() if isinstance(k, int) and k != 500}
    return by_class, by_status


class Edge:
    def __init__(self, app: ASGIApp, metrics: AppMetrics, handlers: dict[Any, Any] | None = None, *,
                 max_body: int = DEFAULT_MAX_BODY, bulk_max_body: int = BULK_MAX_BODY) -> None:
        self.app = app
        self.metrics = metrics
        self.by_class, self.by_status = split_handlers(handlers or {})
        self.max_body = max_body
        self.bulk_max_body = bulk_max_body
        self._latency: dict[tuple[str, str, int], Any] = {}  # histogram children by labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        supplied = next((v for k, v in scope.get("headers", ()) if k == HEADER), None)
        try:
            rid = accept_request_id(supplied.decode("ascii") if supplied is not None else None)
        except UnicodeDecodeError:
            rid = accept_request_id(None)
        token = REQUEST_ID.set(rid)
        raw = scope.get("raw_path")
        if raw:
            path = routing_path(raw)
            root = scope.get("root_path", "")
            if root and not path.startswith(root):
                path = root + path  # servers that leave the root path out of raw_path
            scope["path"] = path
        scope[HANDLERS] = (self.by_class, self.by_status)
        status = 500
        started = False
        rid_header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                headers.append(rid_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            if scope.get("method") in BODY_METHODS:
                limit = body_limit(scope, self.max_body, self.bulk_max_body)
                body = await read_body(scope, receive, limit)
                if body is DISCONNECTED:
                    status = 499  # nobody to answer; logged and measured as such
                    return
                if not isinstance(body, bytes):
                    await error_response(413, "payload_too_large", f"request body exceeds {limit} bytes",
                                         {"limit": limit})(scope, receive, send_with_id)
                    return
                receive = _replay(body, receive)
            async with AsyncExitStack() as stack:
                scope[ASTACK] = stack
                await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # answered here, inside the request's context, so the traceback line and the 500 body
            # carry the request id
            if started:
                raise
            await self._answer(exc, scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - t0
            route = route_template(scope)
            method = str(scope.get("method", ""))
            method = method if method in METHODS else "other"
            key = (method, route, status)
            child = self._latency.get(key)
            if child is None:
                child = self._latency.setdefault(key, self.metrics.http_seconds.labels(
                    method=method, route=route, status=str(status)))
            child.observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("%s %s %d %.1f ms", method, scope.get("path", ""), status, elapsed * 1000,
                                extra={"method": method, "path": scope.get("path", ""), "route": route,
                                       "status": status, "duration_ms": round(elapsed * 1000, 3)})
            REQUEST_ID.reset(token)

    async def _answer(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """The declared handler of what the router raised (404, 405), else a logged 500."""
        handler = self.by_status.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((self.by_class[c] for c in type(exc).__mro__ if c in self.by_class), None)
        if handler is None:
            log.exception("unexpected error")
            await error_response(500, "internal", "internal error; see the server log")(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await handler(request, exc) if is_async_callable(handler) else \
            await run_in_threadpool(handler, request, exc)
        if response is not None:
            await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body as one message, then the connection's own messages (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
