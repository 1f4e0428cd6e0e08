"""`poolvisor ha status|admission` and `serve`'s HA loop (on by default) against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_cli_serve
from test_cli_serve import Server, one_error_line

from live_server import CLI, live_server

run = test_cli_serve.run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with live_server(tmp_path_factory.mktemp("serve-ha"), "--demo", "3", "--log-level", "warning",
                     "--controller-interval", "0") as live:
        yield Server(live.url, live.env, live.home, live.proc)


def test_ha_status_and_admission(server: Server, run: Callable[..., Any]) -> None:
    r = run("ha", "status")
    assert r.returncode == 0, r.stderr
    assert "heartbeat every 1 s" in r.stdout and "tolerate 0 host failure(s)" in r.stdout
    st = json.loads(run("ha", "status", "--json").stdout)
    assert st["steps"] >= 1  # the loop runs by default
    r = run("ha", "admission", "--tolerate", "1", "--reserve", "vcpu=99.9")
    assert r.returncode == 0, r.stderr
    assert "vcpu 99.9 %" in r.stdout
    one_error_line(run("vm", "create", "big", "--flavor", "small", "--project", "demo"),
                   "admission control (reserve 99.9 % of vcpu)")
    one_error_line(run("ha", "admission", "--reserve", "vcpu=100"), "reserve_percent")
    r = run("ha", "admission", "--clear")  # a usage error: exit 2, one line
    assert r.returncode == 2 and r.stderr == "poolvisor: error: --clear needs --pool and nothing else\n"
    one_error_line(run("ha", "admission", "--clear", "--pool", "demo"), "no admission policy of its own")
    assert run("ha", "admission", "--tolerate", "0").returncode == 0
    assert json.loads(run("ha", "admission", "--json").stdout)["global"]["tolerate_failures"] == 0


def test_failed_host_workloads_are_restarted(server: Server, run: Callable[..., Any]) -> None:
    assert run("ha", "admission", "--tolerate", "0").returncode == 0  # no reserve left over
    assert run("vm", "create", "keep", "--flavor", "small", "--project", "demo").returncode == 0
    host = json.loads(run("vm", "show", "keep", "--project", "demo", "--json").stdout)["host"]
    assert run("sim", "fail", host).returncode == 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        w = json.loads(run("vm", "show", "keep", "--project", "demo", "--json").stdout)
        if w["state"] == "running" and w["host"] != host:
            break
        time.sleep(0.2)
    assert w["state"] == "running" and w["host"] != host, w
    kinds = json.loads(run("events", "--kind", "workload", "--json").stdout)
    assert any(e["kind"] == "workload.restarted" for e in kinds)


def test_bad_ha_interval_is_one_error_line(tmp_path: Any) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "POOLVISOR_HOME": str(tmp_path / "data")}
    for bad in ("0.001", "-1", "99999"):
        argv = [*CLI, "serve", "--db", str(tmp_path / "x.db"), "--port", "1", "--ha-interval", bad]
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and r.stderr.startswith("poolvisor: error: --ha-interval"), r
        assert r.stderr.count("\n") == 1 and not (tmp_path / "x.db").exists()
