"""Route on path segments as the client sent them: an encoded slash stays inside its segment.

ASGI servers decode the path before routing, so `/v1/workloads/a%2Fstart` would reach the route
`/v1/workloads/{name}/start` with the name `a`, and `..%2Fpools%2Fx` would be split into segments
the client never sent. Rebuilding the routing path from `raw_path` with `%2F` kept encoded makes
such a segment one (invalid) name: a 422 like any other bad name, on every route. The path is
always rebuilt from `raw_path` (when the server gives one), so every server decodes it the same
way, exactly once.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send


def routing_path(raw_path: bytes) -> str:
    """The decoded path, except that a slash decoded from %2F does not split a segment."""
    return "/".join(unquote(seg).replace("/", "%2F") for seg in raw_path.decode("latin-1").split("/"))


class EncodedSlashMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            root = scope.get("root_path", "")
            path = routing_path(raw)
            if root and not path.startswith(root):
                path = root + path  # servers that leave the root path out of raw_path
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)
