"""GET /v1/events filters (kind, object, project, severity, since, limit) and the stream's
resource use: an idle stream holds no database connection and ends when the server stops."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from poolvisor.api.app import create_app
from poolvisor.cli.events import parse_sse
from poolvisor.services import Services


def _kinds(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [e["kind"] for e in r.json()]


def test_filters(client: Any, admin: dict[str, str], svc: Services) -> None:
    svc.workloads.create_workload("demo", "a1", flavor="small")
    svc.sim.fail_host(svc.hosts.list_hosts()[0].name)
    ev = client.get("/v1/events", headers=admin, params={"kind": "workload"}).json()
    assert ev and all(e["kind"].startswith("workload.") for e in ev)
    assert _kinds(client.get("/v1/events", headers=admin, params={"kind": "host.failed"})) == ["host.failed"]
    assert _kinds(client.get("/v1/events", headers=admin, params={"kind": "host.fail"})) == []  # not a prefix
    by_obj = client.get("/v1/events", headers=admin, params={"object": "workload/demo"}).json()
    assert by_obj and {e["subject"] for e in by_obj} == {"workload/demo/a1"}
    assert client.get("/v1/events", headers=admin, params={"object": "workload/dem"}).json() == []
    crit = client.get("/v1/events", headers=admin, params={"severity": "critical"}).json()
    assert [e["kind"] for e in crit] == ["host.failed"] and crit[0]["severity"] == "critical"
    warn = _kinds(client.get("/v1/events", headers=admin, params={"severity": "warning"}))
    assert "host.failed" in warn and "workload.lost" in warn and "workload.created" not in warn
    assert all(e["severity"] == "info" for e in ev if e["kind"] == "workload.created")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/v1/events", headers=admin, params={"since": future}).json() == []
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # no offset = UTC
    assert len(client.get("/v1/events", headers=admin, params={"since": past, "limit": 3}).json()) == 3


@pytest.mark.parametrize("params", [
    {"kind": "a b"}, {"kind": ""}, {"object": "host//x"}, {"object": "/host"}, {"object": "a/b/c/d/e"},
    {"severity": "loud"}, {"since": "yesterday"}, {"since": "1969-12-31T00:00:00Z"}, {"limit": "0"},
    {"project": "../x"}, {"last_event_id": "-1"}, {"last_event_id": "x"},
])
def test_bad_filters_are_422(client: Any, admin: dict[str, str], params: dict[str, str]) -> None:
    paths = ["/v1/events"] if "limit" in params else ["/v1/events/stream"] if "last_event_id" in params \
        else ["/v1/events", "/v1/events/stream"]
    for path in paths:
        r = client.get(path, headers=admin, params=params)
        assert r.status_code == 422 and r.json()["error"] == "invalid_input", (path, params, r.text)


def test_member_scope(client: Any, member: Callable[[str], dict[str, str]], svc: Services) -> None:
    mine = member("acme")
    member("globex")
    svc.workloads.create_workload("globex", "g1", flavor="small")
    svc.workloads.create_workload("acme", "m1", flavor="small")
    evs = client.get("/v1/events", headers=mine, params={"kind": "workload"}).json()
    assert evs and {e["project"] for e in evs} == {"acme"}
    assert client.get("/v1/events", headers=mine, params={"project": "globex"}).status_code == 404
    assert client.get("/v1/events", headers=mine, params={"object": "workload/globex"}).json() == []
    assert client.get("/v1/events/stream", headers=mine, params={"project": "globex"}).status_code == 404
    assert client.get("/v1/events/stream", headers=mine, params={"project": "nope"}).status_code == 404


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_idle_stream_holds_no_connection_and_ends_with_the_server(svc: Services, admin: dict[str, str]
                                                                  ) -> None:
    app = create_app(svc)
    app.state.event_poll_s = 0.05
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    app.state.stopping = lambda: server.should_exit
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    got: list[dict[str, Any]] = []
    ended, opened = threading.Event(), threading.Event()

    def read() -> None:
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as c, \
                c.stream("GET", f"{url}/v1/events/stream", headers=admin) as r:
            opened.set()
            for e in parse_sse(r.iter_lines()):
                got.append(e)
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert opened.wait(10)
        svc.workloads.create_workload("demo", "idle1", flavor="small")
        deadline = time.monotonic() + 10
        while not any(e["subject"] == "workload/demo/idle1" for e in got) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(e["subject"] == "workload/demo/idle1" for e in got)
        pool = svc.store.engine.pool
        samples = []
        for _ in range(20):  # polls run every 50 ms: between them nothing is checked out
            samples.append(pool.checkedout())  # type: ignore[attr-defined]
            time.sleep(0.013)
        assert samples.count(0) >= 15, samples
    finally:
        t0 = time.monotonic()
        server.should_exit = True
        th.join(15)
    assert not th.is_alive() and time.monotonic() - t0 < 5, "an open stream held the server"
    assert ended.wait(5)


def test_a_revoked_token_ends_its_stream(svc: Services, admin: dict[str, str]) -> None:
    """The token is checked again at each heartbeat: once revoked, the stream ends with an error
    event instead of going on showing the project's events."""
    svc.catalog.create_project("acme")
    tok = svc.auth.create_token("member", "acme")
    app = create_app(svc)
    app.state.event_poll_s, app.state.event_heartbeat_s = 0.05, 0.2
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    app.state.stopping = lambda: server.should_exit
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    lines: list[str] = []
    try:
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as c, \
                c.stream("GET", f"http://127.0.0.1:{port}/v1/events/stream",
                         headers={"Authorization": f"Bearer {tok}"}) as r:
            assert r.status_code == 200
            token_id = next(t.id for t in svc.auth.list_tokens() if t.project == "acme")
            svc.auth.revoke_token(token_id)
            t0 = time.monotonic()
            lines.extend(r.iter_lines())  # ends when the server closes the stream
        assert time.monotonic() - t0 < 5
    finally:
        server.should_exit = True
        th.join(15)
    assert "event: error" in lines and any("unauthorized" in x for x in lines), lines
