"""Route on path segments as the client sent them: an encoded slash stays inside its segment.

ASGI servers decode the path before routing, so `/v1/workloads/a%2Fstart` would reach the route
`/v1/workloads/{name}/start` with the name `a`, and `..%2Fpools%2Fx` would be split into segments
the client never sent. Rebuilding the routing path from `raw_path` with `%2F` kept encoded makes
such a segment one (invalid) name: a 422 like any other bad name, on every route. The path is
always rebuilt from `raw_path` (when the server gives one), so every server decodes it the same
way, exactly once. The edge layer (api/observe.py) applies it to every request.
"""

from __future__ import annotations

from urllib.parse import unquote


def routing_path(raw_path: bytes) -> str:
    """The decoded path, except that a slash decoded from %2F does not split a segment."""
    if b"%" not in raw_path:  # nothing encoded (nearly every request): the bytes are the path
        return raw_path.decode("latin-1")
    return "/".join(unquote(seg).replace("/", "%2F") for seg in raw_path.decode("latin-1").split("/"))
