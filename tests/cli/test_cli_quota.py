"""`poolvisor project quota set|show` and `serve --rate-limit/--rate-burst` against a real server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import test_cli_serve
from test_cli_serve import Server, one_error_line

from live_server import live_server

run = test_cli_serve.run


def loopback_port() -> int:
    for port in range(19000, 19500):  # this suite's loopback range
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free loopback port in 19000..19499")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`poolvisor serve` with a default limit of 1 creation request/s per project, burst 2."""
    with live_server(tmp_path_factory.mktemp("serve-quota"), "--demo", "3", "--controller-interval", "0",
                     "--log-level", "warning", "--rate-limit", "60/m", "--rate-burst", "2",
                     port=loopback_port()) as live:
        yield Server(live.url, live.env, live.home, live.proc)


def test_quota_set_show_and_refusals(server: Server, run: Callable[..., Any]) -> None:
    r = run("project", "quota", "set", "demo", "vcpu=2", "workloads=5", "--rate", "120/m", "--burst", "4")
    assert r.returncode == 0, r.stderr
    assert "vcpu=2, workloads=5; rate limit: 2/s, burst 4" in r.stdout
    shown = json.loads(run("project", "quota", "show", "demo", "--json").stdout)
    assert shown["limits"] == {"vcpu": 2, "workloads": 5}
    assert shown["rate_limit"] == {"rate_per_s": 2, "burst": 4}
    for i in range(2):
        assert run("vm", "create", f"q{i}", "--flavor", "small", "--project", "demo").returncode == 0
    one_error_line(run("vm", "create", "q2", "--flavor", "small", "--project", "demo"),
                   "quota exceeded", "vcpu used 2 + requested 1 > limit 2")
    human = run("project", "quota", "show", "demo").stdout
    assert "vcpu" in human and "workloads" in human and "2/s, burst 4" in human
    member = run("project", "token", "demo").stdout.strip()
    one_error_line(run("project", "quota", "set", "demo", "--token", member), "admin")
    one_error_line(run("project", "quota", "set", "demo", "vcpu=x"), "not a number")
    one_error_line(run("project", "quota", "set", "demo", "--rate", "fast"), "--rate")
    one_error_line(run("project", "quota", "set", "demo", "--burst", "3"), "--burst needs --rate")
    one_error_line(run("project", "quota", "set", "demo", "unobtainium=1"),
                   "unknown resource 'unobtainium' in the quota")
    assert run("project", "quota", "set", "demo").returncode == 0  # no limits: the quota is removed
    assert json.loads(run("project", "quota", "show", "demo", "--json").stdout)["limits"] == {}


def test_server_default_rate_limit(server: Server, run: Callable[..., Any]) -> None:
    run("project", "create", "burst")
    codes, retry = [], []
    for i in range(4):
        r = run("vm", "create", f"r{i}", "--flavor", "small", "--project", "burst")
        codes.append(r.returncode)
        if r.returncode:
            one_error_line(r, "too many creation requests", "retry after 1 s")
            retry.append(i)
    assert codes[:2] == [0, 0] and retry  # the burst of 2 passes, then 429
    token = (server.home / ".config" / "poolvisor" / "token").read_text().strip()
    r = httpx.post(f"{server.url}/v1/workloads", json={"name": "r9", "flavor": "small", "project": "burst"},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    time.sleep(1.0)
    assert run("vm", "create", "r9", "--flavor", "small", "--project", "burst").returncode == 0


def test_serve_rejects_bad_rate_options(server: Server) -> None:
    for args, fragment in ((("--rate-limit", "0"), "--rate-limit"),
                           (("--rate-limit", "ten/s"), "--rate-limit"),
                           (("--rate-burst", "3"), "--rate-burst needs --rate-limit")):
        r = server.cli("serve", "--port", str(loopback_port()), *args)
        one_error_line(r, fragment)
