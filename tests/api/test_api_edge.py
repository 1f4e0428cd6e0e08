"""The app's middleware stack is the edge layer alone, and the route index picks, for every path of
every route, the route FastAPI's router would pick (api/routing.py, api/observe.py)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Match, Route

from poolvisor.api.app import create_app
from poolvisor.api.observe import Edge
from poolvisor.api.routing import PoolvisorAPI, RouteIndex, include_flat
from poolvisor.services import Services

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _linear(app: Any, scope: dict[str, Any]) -> Any:
    """The route FastAPI's router chooses: the first full match in order (None: no full match)."""
    for route in app.router.routes:
        match, _ = route.matches(dict(scope))
        if match is Match.FULL:
            return route
    return None


def _indexed(index: RouteIndex, scope: dict[str, Any]) -> Any:
    """The route the index dispatches to (None: it hands the request to the router)."""
    for route in index.candidates(scope):
        if not isinstance(route, Route):
            return None
        match, _ = route.matches(dict(scope))
        if match is Match.FULL:
            return route
    return None


def _paths(app: Any) -> set[str]:
    """A concrete path for every route template, plus near misses (trailing slash, extra segment)."""
    out = {"/", "/nowhere", "/v1", "/v1/", "/ui", "/ui/static/x.css", "/v1/workloads/batch",
           "/v1/workloads/a%2Fb"}
    for route in app.router.routes:
        template = getattr(route, "path", None)
        if not isinstance(template, str):
            continue
        for fill in ("x1", "batch", "7"):
            p = re.sub(r"\{[^}]+\}", fill, template)
            out |= {p, p + "/", p + "/extra"}
    return out


@pytest.mark.parametrize("sim_admin", [False, True])
def test_the_index_picks_the_routers_route_for_every_path_and_method(svc: Services, sim_admin: bool) -> None:
    app = create_app(svc, sim_admin=sim_admin)
    index = RouteIndex(app.router)
    checked = 0
    for path in sorted(_paths(app)):
        for method in METHODS:
            scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [],
                     "query_string": b""}
            chosen = _indexed(index, scope)
            if chosen is not None:  # else the router itself decides, exactly as before
                assert chosen is _linear(app, scope), (method, path)
                checked += 1
    assert checked > 150  # the index answered for (nearly) every API route


def test_the_middleware_stack_is_the_edge_over_the_index(svc: Services) -> None:
    app = create_app(svc)
    stack = app.build_middleware_stack()
    assert isinstance(app, PoolvisorAPI) and isinstance(stack, Edge) and isinstance(stack.app, RouteIndex)
    assert not app._native_telemetry.enabled()  # FastAPI's OpenTelemetry layer is off
    assert all(isinstance(r, APIRoute) for r in app.router.routes
               if getattr(r, "path", "").startswith("/v1/"))


def test_a_route_added_after_the_first_request_is_found(client: Any, admin: dict[str, str]) -> None:
    assert client.get("/healthz").status_code == 200  # the index is built
    from fastapi import APIRouter

    extra = APIRouter()

    @extra.get("/v1/late-{n}")
    async def late(n: str) -> dict[str, str]:
        return {"n": n}

    include_flat(client.app, extra)
    r = client.get("/v1/late-5")
    assert r.status_code == 200 and r.json() == {"n": "5"}
    assert r.headers["x-request-id"]


def test_include_flat_refuses_what_it_would_drop() -> None:
    from fastapi import APIRouter, FastAPI

    outer, inner = APIRouter(), APIRouter()

    @inner.get("/x")
    async def x() -> None:
        return None

    outer.include_router(inner)
    with pytest.raises(TypeError):
        include_flat(FastAPI(), outer)


def test_router_errors_go_through_the_declared_handlers(client: Any, admin: dict[str, str]) -> None:
    r = client.get("/nowhere/at/all", headers=admin)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert r.json()["request_id"] == r.headers["x-request-id"]
    r = client.put("/v1/pools", headers=admin, json={})
    assert r.status_code == 405 and "GET" in r.headers["allow"] and r.json()["error"] == "method_not_allowed"


def test_a_client_that_leaves_mid_body_gets_no_answer(svc: Services) -> None:
    app = create_app(svc)
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/pools", "raw_path": b"/v1/pools", "query_string": b"",
             "root_path": "", "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert sent == []
