"""Pools, hosts, flavors, projects, tokens, events and metrics through the HTTP API."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, cast

from fastapi.routing import APIRoute

from poolvisor.api import routes as api_routes
from poolvisor.api.app import create_app
from poolvisor.api.auth import admin as admin_dependency
from poolvisor.services import Services


def test_healthz_needs_no_token(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_missing_or_bad_token_is_401_with_error_body(client: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer " + "x" * 5000}):
        r = client.get("/v1/hosts", headers=headers)
        assert r.status_code == 401, headers
        body = r.json()
        assert body["error"] == "unauthorized" and body["message"]
        assert r.headers["www-authenticate"] == "Bearer"


def test_demo_pool_listed(client: Any, admin: dict[str, str]) -> None:
    pools = client.get("/v1/pools", headers=admin).json()
    assert [p["name"] for p in pools] == ["demo"]
    assert pools[0]["hosts"] == 6
    hosts = client.get("/v1/hosts", params={"pool": "demo"}, headers=admin).json()
    assert len(hosts) == 6 and all(h["state"] == "up" for h in hosts)
    assert client.get("/v1/hosts", params={"pool": "nope"}, headers=admin).status_code == 404
    flavors = {f["name"] for f in client.get("/v1/flavors", headers=admin).json()}
    assert {"tiny", "small", "medium", "large", "xlarge"} <= flavors


def test_pool_host_flavor_lifecycle(client: Any, admin: dict[str, str], svc: Services) -> None:
    assert client.post("/v1/pools", json={"name": "edge"}, headers=admin).status_code == 201
    assert client.post("/v1/pools", json={"name": "edge"}, headers=admin).status_code == 409
    r = client.post("/v1/hosts", headers=admin, json={
        "name": "e1", "pool": "edge", "capacity": {"vcpu": 8, "memory_mib": 16384},
        "overcommit": {"vcpu": 4}, "labels": {"ssd": "true"}, "domain": "rack-e"})
    assert r.status_code == 201, r.text
    host = r.json()
    assert host["pool"] == "edge" and host["free"]["vcpu"] == 32 and host["labels"] == {"ssd": "true"}
    assert client.get("/v1/hosts/e1", headers=admin).json()["domain"] == "rack-e"
    r = client.put("/v1/hosts/e1/state", json={"state": "maintenance"}, headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "maintenance"
    assert client.put("/v1/hosts/e1/state", json={"state": "melted"}, headers=admin).status_code == 422
    # a pool with hosts cannot go
    assert client.delete("/v1/pools/edge", headers=admin).status_code == 409
    assert client.delete("/v1/hosts/e1", headers=admin).status_code == 204
    assert client.get("/v1/hosts/e1", headers=admin).status_code == 404
    assert client.delete("/v1/pools/edge", headers=admin).status_code == 204

    r = client.post("/v1/flavors", json={"name": "huge", "demand": {"vcpu": 64}}, headers=admin)
    assert r.status_code == 201 and r.json()["demand"] == {"vcpu": 64.0}
    assert client.get("/v1/flavors/huge", headers=admin).status_code == 200
    assert client.delete("/v1/flavors/huge", headers=admin).status_code == 204
    assert client.get("/v1/flavors/huge", headers=admin).status_code == 404
    assert svc.repair.check().ok


def test_bad_input_is_a_declared_4xx_and_writes_nothing(client: Any, admin: dict[str, str],
                                                        svc: Services) -> None:
    before = len(svc.hosts.list_hosts())
    cases = [
        {"name": "x" * 64, "capacity": {"vcpu": 1}},  # name too long
        {"name": "", "capacity": {"vcpu": 1}},
        {"name": "bad/name", "capacity": {"vcpu": 1}},
        {"name": "h", "capacity": {"vcpu": -1}},  # negative
        {"name": "h", "capacity": {"vcpu": 1e300}},  # absurd
        {"name": "h", "capacity": {}},
        {"name": "h", "capacity": {"Not A Resource": 1}},
        {"name": "h", "capacity": {"vcpu": 1}, "colour": "red"},  # unknown field
        {"name": "h", "capacity": {"vcpu": 1}, "pool": "missing"},  # missing reference -> 404
    ]
    for body in cases:
        r = client.post("/v1/hosts", json=body, headers=admin)
        assert r.status_code in (404, 422), (body, r.status_code, r.text)
        err = r.json()
        assert set(err) == {"error", "message", "detail", "request_id"} and err["message"], err
    # malformed JSON
    json_headers = {**admin, "content-type": "application/json"}
    r = client.post("/v1/hosts", content=b'{"name": "h", ', headers=json_headers)
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"
    # duplicate
    r = client.post("/v1/hosts", json={"name": "demo-000", "capacity": {"vcpu": 1}}, headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    assert len(svc.hosts.list_hosts()) == before


def test_unknown_resource_in_flavor_is_422(client: Any, admin: dict[str, str]) -> None:
    r = client.post("/v1/flavors", json={"name": "f", "demand": {"unobtainium": 1}}, headers=admin)
    assert r.status_code == 422, r.text
    assert "unobtainium" in r.json()["message"]


def test_oversize_body_is_413(client: Any, admin: dict[str, str], svc: Services) -> None:
    big = {"name": "big", "description": "x" * (70 * 1024)}
    r = client.post("/v1/pools", json=big, headers=admin)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: the limit still holds
        for _ in range(80):
            yield b"x" * 1024

    r = client.post("/v1/pools", content=chunks(), headers={**admin, "content-type": "application/json"})
    assert r.status_code == 413
    assert [p.name for p in svc.catalog.list_pools()] == ["demo"]


def test_member_cannot_administer(client: Any, member: Any) -> None:
    h = member("team-a")
    assert client.get("/v1/hosts", headers=h).status_code == 200  # reads are allowed
    assert client.post("/v1/pools", json={"name": "p"}, headers=h).status_code == 403
    assert client.post("/v1/hosts", json={"name": "h", "capacity": {"vcpu": 1}}, headers=h).status_code == 403
    assert client.put("/v1/hosts/demo-000/state", json={"state": "down"}, headers=h).status_code == 403
    assert client.post("/v1/tokens", json={"role": "admin"}, headers=h).status_code == 403
    r = client.post("/v1/projects", json={"name": "mine"}, headers=h)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert [p["name"] for p in client.get("/v1/projects", headers=h).json()] == ["team-a"]
    assert client.get("/v1/projects/demo", headers=h).status_code == 404
    who = client.get("/v1/whoami", headers=h).json()
    assert isinstance(who.pop("token_id"), int)
    assert who == {"role": "member", "project": "team-a", "expires_at": None}


def test_tokens(client: Any, admin: dict[str, str]) -> None:
    assert client.post("/v1/projects", json={"name": "team-b"}, headers=admin).status_code == 201
    r = client.post("/v1/tokens", json={"role": "member", "project": "team-b"}, headers=admin)
    assert r.status_code == 201
    tok = r.json()["token"]
    who = client.get("/v1/whoami", headers={"Authorization": f"Bearer {tok}"}).json()
    assert who == {"role": "member", "project": "team-b", "token_id": r.json()["id"], "expires_at": None}
    for body, status in (({"role": "member"}, 422), ({"role": "admin", "project": "team-b"}, 422),
                         ({"role": "member", "project": "nope"}, 404), ({"role": "root"}, 422)):
        assert client.post("/v1/tokens", json=body, headers=admin).status_code == status, body


def test_events_and_metrics(client: Any, admin: dict[str, str], member: Any) -> None:
    assert client.post("/v1/workloads", json={"name": "v", "flavor": "small", "project": "demo"},
                       headers=admin).status_code == 201
    events = client.get("/v1/events", params={"limit": 5}, headers=admin).json()
    assert 1 <= len(events) <= 5 and all({"id", "time", "kind", "subject"} <= set(e) for e in events)
    assert client.get("/v1/events", params={"limit": 0}, headers=admin).status_code == 422
    other = member("team-c")
    assert all(e["project"] == "team-c" for e in client.get("/v1/events", headers=other).json())
    assert client.get("/v1/events", params={"project": "demo"}, headers=other).status_code == 404

    r = client.get("/metrics", headers=admin)  # per-project series need a token (test_api_metrics.py)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'poolvisor_hosts{pool="demo",state="up"} 6' in r.text
    assert 'poolvisor_workloads{project="demo",state="running"} 1' in r.text
    assert 'poolvisor_pool_allocated{pool="demo",resource="memory_mib"} 2048' in r.text


def test_openapi_declares_every_error(client: Any) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["error", "message"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path.startswith("/v1"):
                assert {"401", "503"} <= codes, (method, path)
            if op.get("requestBody"):
                assert {"413", "422"} <= codes, (method, path)
            if "{name}" in path:
                assert {"404", "422"} <= codes, (method, path)
            if method in ("post", "put", "delete") and path.startswith("/v1") and not _member_writable(path):
                assert "403" in codes, (method, path)


# Paths a member may write (inside its own project), by design; every other write is admin-only.
# Networks, address pools and routers belong to a project like workloads (docs/network.md); the
# dataplane changes the server's machine and stays admin-only. Volumes belong to a project as well
# (docs/storage.md); storage pools and their devices are infrastructure, admin-only like hosts. A
# member acknowledges its project's alerts (docs/observability.md).
MEMBER_WRITABLE = ("/v1/workloads", "/v1/tokens", "/v1/utilization", "/v1/ip-pools", "/v1/networks",
                   "/v1/routers", "/v1/tasks", "/v1/volumes", "/v1/alerts")  # tasks: members cancel theirs


def _member_writable(path: str) -> bool:
    return path.startswith(MEMBER_WRITABLE)


def _needs_admin(dependant: Any) -> bool:
    return any(d.call is admin_dependency or _needs_admin(d) for d in dependant.dependencies)


def test_admin_routes_declare_403_and_member_routes_are_open_to_members() -> None:
    """The registry above against the code: a route behind the admin dependency declares 403 and
    is not listed as member-writable; a member-writable write is not behind it."""
    doc = create_app(cast(Services, None), sim_admin=True).openapi()  # every route module mounted
    routes = [r for m in pkgutil.iter_modules(api_routes.__path__)
              for r in importlib.import_module(f"{api_routes.__name__}.{m.name}").router.routes
              if isinstance(r, APIRoute)]
    assert {(m.lower(), r.path_format) for r in routes for m in r.methods} == {
        (m, p) for p, item in doc["paths"].items() for m in item}  # every operation, no other
    assert sum(_needs_admin(r.dependant) for r in routes) >= 10
    for r in routes:
        for method in r.methods:
            declared = set(doc["paths"][r.path_format][method.lower()]["responses"])
            if _needs_admin(r.dependant):
                assert "403" in declared and not _member_writable(r.path_format), (method, r.path_format)
            elif method in ("POST", "PUT", "DELETE") and r.path_format.startswith("/v1"):
                assert _member_writable(r.path_format) or "403" in declared, (method, r.path_format)


def test_unavailable_backend_is_503(client: Any, admin: dict[str, str], svc: Services,
                                    monkeypatch: Any) -> None:
    from poolvisor.domain.errors import UnavailableError

    def down(*_: Any, **__: Any) -> Any:
        raise UnavailableError("database unreachable: connection refused")

    monkeypatch.setattr(svc.hosts, "list_hosts", down)
    r = client.get("/v1/hosts", headers=admin)
    assert r.status_code == 503
    assert r.json() == {"error": "unavailable", "message": "database unreachable: connection refused",
                        "detail": None, "request_id": r.headers["x-request-id"]}


def test_unexpected_exception_is_a_500_error_body_not_a_crash(client: Any, admin: dict[str, str],
                                                              svc: Services, monkeypatch: Any) -> None:
    def bug(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(svc.catalog, "list_pools", bug)
    r = client.get("/v1/pools", headers=admin)
    assert r.status_code == 500 and r.json()["error"] == "internal" and "boom" not in r.text
