"""The planned request handlers (api/handler.py) answer exactly as FastAPI's own: the same status,
headers and body for the same requests, valid or not, and they cover every API route but the two
that use what the plan leaves to FastAPI (a stream, a custom response class)."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.routing import APIRoute, request_response
from pydantic import BaseModel

from poolvisor.api import handler
from poolvisor.api.app import create_app
from poolvisor.api.metrics import AppMetrics
from poolvisor.api.routing import PoolvisorAPI, include_flat
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

JSON = {"Content-Type": "application/json"}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)?")


def _fastapi_handlers(app: FastAPI) -> list[tuple[APIRoute, Any]]:
    """Put FastAPI's own handler back on every planned route; returns what to restore."""
    saved = []
    for route in app.router.routes:
        if isinstance(route, APIRoute) and handler.install(route):
            saved.append((route, route.app))
            route.app = request_response(route.get_route_handler())
    return saved


def _requests(tokens: dict[str, str]) -> list[tuple[str, str, dict[str, str], Any, str | None]]:
    """(method, url, headers, body, content) covering valid input, bad input and refusals."""
    admin, viewer, member, bad = (f"Bearer {tokens[k]}" for k in ("admin", "viewer", "member", "bad"))
    a, v, m = {"Authorization": admin}, {"Authorization": viewer}, {"Authorization": member}
    wl = {"name": "web-1", "flavor": "small", "project": "demo"}
    return [
        ("GET", "/healthz", {}, None, None),
        ("GET", "/v1/whoami", {}, None, None),
        ("GET", "/v1/whoami", {"Authorization": bad}, None, None),
        ("GET", "/v1/whoami", {"Authorization": "Basic eDp5"}, None, None),
        ("GET", "/v1/whoami", a, None, None),
        ("GET", "/v1/whoami", v, None, None),
        ("GET", "/v1/workloads?project=demo", a, None, None),
        ("GET", "/v1/workloads?project=bad%20name", a, None, None),
        ("GET", "/v1/workloads?project=", a, None, None),
        ("GET", "/v1/workloads?project=a&project=b", a, None, None),
        ("GET", "/v1/workloads?project=bad%20name", {}, None, None),  # 401 before the 422
        ("POST", "/v1/workloads", a | JSON, wl, None),
        ("POST", "/v1/workloads", a | JSON, wl, None),  # 409: exists
        ("POST", "/v1/workloads?dry_run=true", a | JSON, dict(wl, name="web-2"), None),
        ("POST", "/v1/workloads?dry_run=yes", a | JSON, dict(wl, name="web-2"), None),
        ("POST", "/v1/workloads?explain=all", a | JSON, dict(wl, name="web-2"), None),
        ("POST", "/v1/workloads", a | JSON, None, '{"name": "x",'),
        ("POST", "/v1/workloads", a | {"Content-Type": "text/plain"}, None, json.dumps(wl)),
        ("POST", "/v1/workloads", a, None, json.dumps(dict(wl, name="web-3"))),
        ("POST", "/v1/workloads", a | {"Content-Type": "application/vnd.x+json"}, dict(wl, name="web-4"),
         None),
        ("POST", "/v1/workloads", a | JSON, None, ""),
        ("POST", "/v1/workloads", a | JSON, [wl], None),
        ("POST", "/v1/workloads", a | JSON, dict(wl, name="web-5", colour="red"), None),
        ("POST", "/v1/workloads", a | JSON, dict(wl, name="bad name"), None),
        ("POST", "/v1/workloads", a | JSON, dict(wl, name="web-5", priority="3"), None),
        ("POST", "/v1/workloads", v | JSON, dict(wl, name="web-6"), None),
        ("POST", "/v1/workloads", m | JSON, dict(wl, name="web-6", project="other"), None),
        ("POST", "/v1/workloads", m | JSON, {"name": "web-7", "flavor": "small"}, None),
        ("POST", "/v1/workloads/batch?dry_run=true", a | JSON,  # sets the Response parameter's status
         {"project": "demo", "workloads": [{"name": "b-1", "flavor": "small"}]}, None),
        ("GET", "/v1/workloads/web-1", a, None, None),
        ("GET", "/v1/workloads/web-1?project=demo", m, None, None),
        ("GET", "/v1/workloads/nope?project=demo", a, None, None),
        ("POST", "/v1/workloads/web-1/stop?project=demo", a, None, None),
        ("POST", "/v1/workloads/web-1/start?project=demo", a, None, None),
        ("POST", "/v1/workloads/web-1/migrate?project=demo", a | JSON, {"host": "nope"}, None),
        ("POST", "/v1/workloads/web-1/migrate?project=demo", a | JSON, {"host": 3}, None),
        ("DELETE", "/v1/workloads/web-1?project=demo", v, None, None),
        ("DELETE", "/v1/workloads/web-1?project=demo", a, None, None),
        ("DELETE", "/v1/workloads/web-1?project=demo", a, None, None),
        ("DELETE", "/v1/workloads/web-4", a, None, None),
        ("GET", "/v1/hosts", a, None, None),
        ("GET", "/v1/pools", m, None, None),
        ("GET", "/v1/flavors", a, None, None),
        ("GET", "/v1/tasks/999", a, None, None),
        ("GET", "/v1/tasks/x", a, None, None),
        ("PUT", "/v1/workloads", a, None, None),
        ("GET", "/v1/nowhere", a, None, None),
        ("POST", "/v1/tokens", a | JSON, {"role": "member"}, None),
        ("POST", "/v1/tokens", a | JSON, {"role": "emperor", "project": "demo"}, None),
        # 202 with Location; last, as its task runs on and moves the workload
        ("POST", "/v1/workloads/web-7/migrate?project=demo", a, None, None),
    ]


def _normalize(body: bytes) -> Any:
    text = STAMP.sub("<time>", body.decode())
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict):
        value.pop("request_id", None)
        value.pop("token", None)  # a new secret each time
        if isinstance(value.get("id"), int) and "role" in value:
            value.pop("id")  # a token's row id
    return value


def _run(svc: Services, fastapi_own: bool) -> list[tuple[int, list[tuple[str, str]], Any]]:
    tokens = {"admin": svc.auth.bootstrap_admin_token() or "", "bad": "pv_unknown",
              "viewer": svc.auth.create_token("viewer", "demo"),
              "member": svc.auth.create_token("member", "demo")}
    if "other" not in {p.name for p in svc.catalog.list_projects()}:
        svc.catalog.create_project("other")
    app = create_app(svc)
    out = []
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/healthz")  # the route index is built (and the routes planned) on the first request
        saved = _fastapi_handlers(app) if fastapi_own else []
        try:
            for method, url, headers, body, content in _requests(tokens):
                r = client.request(method, url, headers=headers, json=body, content=content)
                kept = sorted((k, v) for k, v in r.headers.items() if k not in ("x-request-id", "date"))
                out.append((r.status_code, kept, _normalize(r.content)))
        finally:
            for route, app_ in saved:
                route.app = app_
    return out


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'second.db'}")
    seed_demo(s, 6)
    yield s
    s.close()


def test_planned_handlers_answer_as_fastapis_own(svc: Services, second: Services) -> None:
    planned, own = _run(svc, fastapi_own=False), _run(second, fastapi_own=True)
    statuses = {s for s, _, _ in planned}
    assert {200, 201, 204, 401, 403, 404, 405, 409, 422} <= statuses  # the requests reach every path
    for i, (a, b) in enumerate(zip(planned, own, strict=True)):
        assert a == b, (i, _requests({k: "t" for k in ("admin", "viewer", "member", "bad")})[i][:2])


def test_every_api_route_is_planned_but_a_stream_and_a_custom_response_class(svc: Services) -> None:
    app = create_app(svc, sim_admin=True)
    routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
    left = sorted(r.path for r in routes if not handler.install(r))
    assert left == ["/metrics", "/v1/events/stream"]
    assert len(routes) > 100


class Item(BaseModel):
    n: int


def _route_app(overrides: bool) -> PoolvisorAPI:
    """A small app whose one route takes a dependency used twice, a Response and a query."""
    calls: list[str] = []

    def dep(request: Request) -> str:
        calls.append(request.url.path)
        return "real"

    def fake() -> str:
        return "fake"

    router = APIRouter()

    @router.get("/item/{n}", response_model=Item, status_code=201)
    def get_item(n: int, response: Response, a: str = Depends(dep), b: str = Depends(dep),
                 q: list[int] = Query(default=[])) -> Any:
        response.headers["X-Dep"] = f"{a},{b},{len(calls)},{sum(q)}"
        if n == 3:
            response.status_code = 203
        return {"n": n, "extra": "dropped"}

    app = PoolvisorAPI()
    app.state.metrics = AppMetrics()
    include_flat(app, router)
    if overrides:  # the route's provider is its router: FastAPI's handler answers then
        router.dependency_overrides_provider = None
        for r in app.router.routes:
            if isinstance(r, APIRoute):
                r.dependency_overrides_provider = app
        app.dependency_overrides[dep] = fake
    return app


@pytest.mark.parametrize("overrides", [False, True])
def test_dependency_cache_response_parameter_and_overrides(overrides: bool) -> None:
    with TestClient(_route_app(overrides)) as client:
        r = client.get("/item/7?q=1&q=2")
        assert r.status_code == 201 and r.json() == {"n": 7}
        assert r.headers["x-dep"] == ("fake,fake,0,3" if overrides else "real,real,1,3")  # dep ran once
        assert client.get("/item/3").status_code == 203
        bad = client.get("/item/x?q=y")
        assert bad.status_code == 422
