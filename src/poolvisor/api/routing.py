"""The app class: FastAPI with one edge layer (api/observe.py) and a route index in front of its router.

FastAPI's router tries the routes in order until one matches, and since FastAPI 0.16x an included
router is a nested scan that matches twice (once to choose, once to handle); `/healthz`, behind
about 150 API routes, cost more in routing than in everything else. The routes are added flat
(`include_flat`) and `RouteIndex` groups them by what a path shows at a glance, its number of
segments and its first two segments when those are literal: a request tries only the routes of
its group that take its method (plus the few that could match any path: mounts, `{x:path}`
parameters, parameters in the first two segments), in the router's order, so the first full match
is the one the router would choose. Anything else (no full match: a 404, a 405, a slash redirect;
a mount, a nested router) goes to FastAPI's router, which decides as it always did.

`build_middleware_stack` replaces FastAPI's seven layers (ServerErrorMiddleware, its exception
telemetry and body-limit layers, ExceptionMiddleware, AsyncExitStackMiddleware, and our four)
with the edge, which does their work: see api/observe.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.convertors import PathConvertor
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from poolvisor.api.handler import install
from poolvisor.api.limits import BULK_MAX_BODY, DEFAULT_MAX_BODY
from poolvisor.api.metrics import AppMetrics
from poolvisor.api.observe import Edge

Key = tuple[int, str, str]
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def path_key(path: str) -> Key:
    """(segments, first, second) of a path or of a route template."""
    segs = path.split("/")
    return len(segs), segs[1] if len(segs) > 1 else "", segs[2] if len(segs) > 2 else ""


def _indexable(route: Any) -> bool:
    """A route (an API route, or a plain one like /openapi.json) whose template fixes its number
    of segments and its first two segments."""
    if not isinstance(route, Route):
        return False
    if any(isinstance(c, PathConvertor) for c in route.param_convertors.values()):
        return False
    _, first, second = path_key(route.path)
    return "{" not in first and "{" not in second


class RouteIndex:
    """The innermost app: the route the router would choose, found among a few candidates."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self._built_for = -1
        self._groups: dict[Key, list[Any]] = {}
        self._by_method: dict[tuple[Key, str], list[Any]] = {}
        self._wild: list[Any] = []

    def _build(self) -> None:
        groups: dict[Key, list[tuple[int, Any]]] = {}
        wild: list[tuple[int, Any]] = []
        for i, route in enumerate(self.router.routes):
            install(route)  # its planned request handler (api/handler.py)
            if isinstance(route, Route) and _indexable(route):
                groups.setdefault(path_key(route.path), []).append((i, route))
            else:
                wild.append((i, route))
        self._groups = {k: [r for _, r in sorted(v + wild, key=lambda ir: ir[0])] for k, v in groups.items()}
        # and by method: a route that does not take the request's method can only match partly
        # (405), never fully, so leaving it out changes no first full match
        self._by_method = {(k, m): [r for r in rs if not isinstance(r, Route) or r.methods is None
                                    or m in r.methods]
                           for k, rs in self._groups.items() for m in METHODS}
        self._wild = [r for _, r in wild]
        self._built_for = len(self.router.routes)

    def candidates(self, scope: Scope) -> list[Any]:
        """The routes that may match this request, in the router's order."""
        if self._built_for != len(self.router.routes):  # routes added since: index them too
            self._build()
        key = path_key(scope["path"])
        found = self._by_method.get((key, scope["method"]))
        return found if found is not None else self._groups.get(key, self._wild)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for route in self.candidates(scope):
                if not isinstance(route, Route):
                    break  # a mount or nested router comes first: the router decides
                match, child = route.matches(scope)
                if match is Match.FULL:
                    if "router" not in scope:
                        scope["router"] = self.router
                    scope.update(child)
                    await route.handle(scope, receive, send)
                    return
        await self.router(scope, receive, send)


def include_flat(app: FastAPI, router: APIRouter) -> None:
    """Add `router`'s routes to the app's own router, in order, as FastAPI used to (their paths
    already carry the router's prefix), not as one nested router. The routers here take no
    include-time options (prefix, tags, dependencies); refuse what this would drop."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"include_flat takes API routes only, not {type(route).__name__}")
    app.router.routes.extend(router.routes)


class PoolvisorAPI(FastAPI):
    """FastAPI with the edge layer as its whole middleware stack (see the module doc)."""

    max_body: int = DEFAULT_MAX_BODY
    bulk_max_body: int = BULK_MAX_BODY

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = RouteIndex(self.router)
        for cls, args, kwargs in reversed(self.user_middleware):  # app.add_middleware, if any
            app = cls(app, *args, **kwargs)
        metrics: AppMetrics = self.state.metrics
        return Edge(app, metrics, dict(self.exception_handlers), max_body=self.max_body,
                    bulk_max_body=self.bulk_max_body)
