"""Request body size limit: refuse oversize bodies with 413 before any handler parses them.

Only methods that carry a body here (POST, PUT, PATCH) are limited; other requests pass untouched
(no route reads their body). The body is buffered up to the limit and replayed to the app, so
chunked uploads without Content-Length are bounded as well. The limit is 64 KiB, more than any
valid single-object request; the bulk endpoints get 4 MiB: room for 10,000 utilization samples or
1,000 plain batch items, though not for 1,000 items each carrying full label and amount maps (a
body the schema allows can then reach tens of MiB, more than a server should buffer for one
request). So the bulk routes state the byte limit in their OpenAPI description next to their
declared 413, and a client splits a larger batch. The edge layer (api/observe.py) applies it to
every request.
"""

from __future__ import annotations

from starlette.types import Receive, Scope

DEFAULT_MAX_BODY = 64 * 1024
BULK_MAX_BODY = 4 * 1024 * 1024
BULK_PATHS = ("/v1/utilization", "/v1/workloads/batch")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
DISCONNECTED = object()  # read_body's answer when the client went away


def body_limit(scope: Scope, max_body: int, bulk_max_body: int) -> int:
    return bulk_max_body if scope.get("path") in BULK_PATHS else max_body


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None | object:
    """The whole body, or None when it exceeds `limit` (declared or sent), or DISCONNECTED."""
    declared = content_length(scope)
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return DISCONNECTED
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = bool(msg.get("more_body", False))
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None
