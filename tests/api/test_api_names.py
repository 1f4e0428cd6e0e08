"""Every name in a path or query is checked by the one name rule, on every route: a declared 422.

The routes are not listed here: they are walked from the app's OpenAPI document, so a new route
is covered (and must use `NamePath`) without touching this file.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from poolvisor.api.app import create_app
from poolvisor.domain.text import NAME_PATTERN, check_name, is_name
from poolvisor.services import Services

BAD_NAMES = ["..", ".", "a?b", "a/b", "../pools/demo", "a#b", "a b", "a\x00b", "\x1b[2J", "\x7f", "\u202e",
             "é", "-lead", "_lead", ".hidden", "a%2Fb", "x" * 64, ""]


def _encode(name: str) -> str:
    """Percent-encode every character but letters and digits, dots included, so that neither the
    client nor a proxy resolves `..` before the server sees it."""
    return "".join(c if c.isascii() and c.isalnum() else "".join(f"%{b:02X}" for b in c.encode())
                   for c in name)


def _operations(client: Any) -> list[tuple[str, str, dict[str, Any]]]:
    doc = client.get("/openapi.json").json()
    return [(method.upper(), path, op) for path, item in doc["paths"].items() for method, op in item.items()]


def test_every_path_parameter_is_a_name(client: Any) -> None:
    params = [(m, p, prm) for m, p, op in _operations(client) for prm in op.get("parameters", [])
              if prm["in"] == "path"]
    assert len(params) >= 15
    for method, path, prm in params:
        s = prm["schema"]
        if prm["name"] in ("token_id", "task_id", "alert_id", "schedule_id"):  # integers (bad ones: below)
            assert s["type"] == "integer", (method, path, s)
        else:
            assert (s["type"], s["pattern"], s["minLength"], s["maxLength"]) == \
                ("string", NAME_PATTERN, 1, 63), (method, path, s)
        assert "422" in _op(client, method, path)["responses"], (method, path)


def _op(client: Any, method: str, path: str) -> dict[str, Any]:
    return next(op for m, p, op in _operations(client) if (m, p) == (method, path))


def test_bad_names_in_every_path_are_a_declared_422(client: Any, admin: dict[str, str]) -> None:
    ops = [(m, p, op) for m, p, op in _operations(client) if "{" in p]
    assert len(ops) >= 15
    for method, path, op in ops:
        for bad in BAD_NAMES:
            if bad == "":
                continue  # an empty segment is another route (or none): see the empty-name test
            url = path
            for slot in ("{name}", "{token_id}", "{task_id}", "{alert_id}"):
                url = url.replace(slot, _encode(bad))
            r = client.request(method, url, headers=admin, json={} if method in ("POST", "PUT") else None)
            assert r.status_code == 422, (method, path, bad, r.status_code, r.text)
            assert str(r.status_code) in op["responses"]
            assert r.json()["error"] == "invalid_input"


def test_empty_name_reaches_no_operation(client: Any, admin: dict[str, str]) -> None:
    for method, path, _ in _operations(client):
        if "{name}" in path:
            r = client.request(method, path.replace("{name}", ""), headers=admin)
            assert r.status_code == 404, (method, path, r.status_code)


def test_encoded_slash_does_not_reach_another_route(client: Any, admin: dict[str, str]) -> None:
    """`a%2Fstart` is one (invalid) segment, not the workload `a` and the action `start`."""
    assert client.post("/v1/workloads", json={"name": "a", "flavor": "tiny", "project": "demo"},
                       headers=admin).status_code == 201
    assert client.get("/v1/workloads/a%2Fstop", headers=admin).status_code == 422
    r = client.post("/v1/workloads/a%2Fstop", headers=admin)  # a name where POST is not served
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET"
    r = client.delete("/v1/workloads/..%2Fpools%2Fdemo", headers=admin)
    assert r.status_code == 422
    assert client.get("/v1/pools/demo", headers=admin).status_code == 200
    assert client.get("/v1/workloads/a", headers=admin).json()["state"] == "running"


def _raw_status(svc: Services, method: str, raw_path: str, token: str) -> int:
    """Send a path exactly as written (no client-side `..` resolution) straight to the ASGI app."""
    app = create_app(svc)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    path = raw_path.split("?")[0]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": raw_path.partition("?")[2].encode(), "server": ("testserver", 80),
             "client": ("127.0.0.1", 1), "headers": [(b"authorization", f"Bearer {token}".encode())]}
    asyncio.run(app(scope, receive, send))
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


@pytest.mark.parametrize(("method", "raw"), [
    ("GET", "/v1/pools/.."), ("DELETE", "/v1/workloads/.."), ("POST", "/v1/workloads/../start"),
    ("GET", "/v1/hosts/."), ("DELETE", "/v1/flavors/.."), ("GET", "/v1/projects/.."),
])
def test_raw_dot_segments_are_invalid_names(svc: Services, admin_token: str, method: str, raw: str) -> None:
    assert _raw_status(svc, method, raw, admin_token) == 422


def test_dot_segments_spanning_routes_find_nothing(svc: Services, admin_token: str) -> None:
    assert _raw_status(svc, "DELETE", "/v1/workloads/../pools/demo", admin_token) == 404
    assert "demo" in {p.name for p in svc.catalog.list_pools()}


@pytest.mark.parametrize(("path", "param"), [
    ("/v1/workloads", "project"), ("/v1/hosts", "pool"), ("/v1/events", "project"),
    ("/v1/workloads/x/utilization", "project"),
])
def test_bad_names_in_queries_are_422(client: Any, admin: dict[str, str], path: str, param: str) -> None:
    for bad in BAD_NAMES:
        r = client.get(path, params={param: bad}, headers=admin)
        assert r.status_code == 422, (path, param, bad, r.text)


def test_domain_and_api_share_the_rule() -> None:
    for bad in BAD_NAMES:
        assert not is_name(bad), bad
        with pytest.raises(Exception, match="name"):
            check_name("pool", bad)
    for good in ("a", "A9", "web-1.prod_x", "0", "x" * 63):
        assert is_name(good) and check_name("pool", good) == good
    assert not is_name("ok\n")  # `$` must not accept a trailing newline
