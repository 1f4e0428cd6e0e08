"""`poolvisor project create --weight / set-weight`, `pool allocation-policy` and `vm create
--reservation/--limit/--shares` against a real server."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_cli_serve
from test_cli_serve import Server, one_error_line

from live_server import live_server

run = test_cli_serve.run


def loopback_port() -> int:
    for port in range(19500, 19700):  # this suite's loopback range
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free loopback port in 19500..19699")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with live_server(tmp_path_factory.mktemp("serve-shares"), "--demo", "2", "--controller-interval", "0",
                     "--log-level", "warning", port=loopback_port()) as live:
        yield Server(live.url, live.env, live.home, live.proc)


def test_weights(server: Server, run: Callable[..., Any]) -> None:
    r = run("project", "create", "heavy", "--weight", "3")
    assert r.returncode == 0, r.stderr
    r = run("project", "set-weight", "heavy", "2.5")
    assert r.returncode == 0 and "fair-share weight 2.5" in r.stdout, r.stderr
    listed = {p["name"]: p["weight"] for p in json.loads(run("project", "list", "--json").stdout)}
    assert listed["heavy"] == 2.5
    one_error_line(run("project", "set-weight", "heavy", "0"), "weight")
    r = server.cli("project", "set-weight", "heavy", "nan")  # a real process: usage errors are one line
    assert r.returncode == 2 and r.stderr.startswith("poolvisor: error: "), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    one_error_line(run("project", "set-weight", "ghost", "2"), "ghost")


def test_allocation_policy_and_declared_resources(server: Server, run: Callable[..., Any]) -> None:
    r = run("pool", "allocation-policy", "demo")
    assert r.returncode == 0 and "allocation policy max" in r.stdout, r.stderr
    assert run("pool", "allocation-policy", "demo", "min").returncode == 0
    one_error_line(run("pool", "allocation-policy", "demo", "median"), "policy")
    r = run("vm", "create", "sh1", "--demand", "vcpu=4,memory_mib=2048", "--pool", "demo", "--reservation",
            "vcpu=1", "--shares", "vcpu=2000", "--json")
    assert r.returncode == 0, r.stderr
    w = json.loads(r.stdout)
    assert w["demand"] == {"vcpu": 1, "memory_mib": 2048}  # min: the reservation is set aside
    assert w["resources"]["vcpu"] == {"reservation": 1, "limit": 4, "shares": 2000}
    one_error_line(run("vm", "create", "sh2", "--demand", "vcpu=2", "--reservation", "vcpu=3"), "exceeds")
    one_error_line(run("vm", "create", "sh3", "--demand", "vcpu=2", "--shares", "vcpu=x"), "--shares")


def test_batch_declarations_and_vm_show(server: Server, run: Callable[..., Any]) -> None:
    """create-batch --reservation/--limit/--shares sizes each by the pool's policy (min, set by the
    test above or here); vm show prints the declaration, the policy that sized it, what it is granted."""
    assert run("pool", "allocation-policy", "demo", "min").returncode == 0
    r = run("vm", "create-batch", "--flavor", "small", "--count", "2", "--prefix", "bd", "--pool", "demo",
            "--reservation", "vcpu=0.5", "--shares", "vcpu=3000", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["workloads"]
    assert [w["demand"]["vcpu"] for w in got] == [0.5, 0.5] and {w["sized_by"] for w in got} == {"min"}
    r = run("vm", "show", "bd-1")
    assert r.returncode == 0, r.stderr
    assert "0.5 / " in r.stdout and "/ 3000" in r.stdout and "allocation policy min" in r.stdout
    assert "granted now" in r.stdout  # the demo's sim hosts report what shares give it
    one_error_line(run("vm", "create-batch", "--flavor", "small", "--count", "1", "--prefix", "bx",
                       "--reservation", "vcpu=99"), "batch item 0")
