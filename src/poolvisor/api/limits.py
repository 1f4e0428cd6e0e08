"""Request body size limit: refuse oversize bodies with 413 before any handler parses them.

Only methods that carry a body here (POST, PUT, PATCH) are limited; other requests pass untouched
(no route reads their body). The body is buffered up to the limit and replayed to the app, so
chunked uploads without Content-Length are bounded as well. The limit is 64 KiB, more than any
valid single-object request; the bulk endpoints get 4 MiB, enough for their largest valid body
(10,000 utilization samples or 1,000 batch items), so a list over its schema's maxItems is a 422,
as the schema says, and only a body no schema allows is a 413.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolvisor.api.errors import error_response

DEFAULT_MAX_BODY = 64 * 1024
BULK_MAX_BODY = 4 * 1024 * 1024
BULK_PATHS = ("/v1/utilization", "/v1/workloads/batch")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY,
                 bulk_max_body: int = BULK_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body
        self.bulk_max_body = bulk_max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.bulk_max_body if scope.get("path") in BULK_PATHS else self.max_body
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._reject(limit, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(limit, scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(msg.get("more_body", False))
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        resp = error_response(413, "payload_too_large", f"request body exceeds {limit} bytes",
                              {"limit": limit})
        await resp(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None
