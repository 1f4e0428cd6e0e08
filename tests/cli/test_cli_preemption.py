"""`poolvisor vm create --class` and `vm show` against a real server: a high-class create preempts a
spot workload, both sides say why; a bad class is one line on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import test_cli_serve
from test_cli_serve import Server, one_error_line

server = test_cli_serve.server  # the module's `serve --demo 5` (5 hosts of 131072 MiB)
run = test_cli_serve.run
WHOLE_HOST = "vcpu=1,memory_mib=131072"


def test_create_with_class_preempts_and_show_says_why(server: Server, run: Callable[..., Any]) -> None:
    for i in range(5):  # every host's memory taken by a spot workload
        r = run("vm", "create", f"s{i}", "--demand", WHOLE_HOST, "--class", "spot", "--project", "demo")
        assert r.returncode == 0, r.stderr
    r = run("vm", "create", "hi", "--demand", WHOLE_HOST, "--class", "high", "--project", "demo")
    assert r.returncode == 0, r.stderr
    assert "preempted demo/s" in r.stdout and "(spot)" in r.stdout
    hi = json.loads(run("vm", "show", "hi", "--project", "demo", "--json").stdout)
    assert hi["priority_class"] == "high"
    victim = hi["explanation"]["preempted"][0]["workload"].split("/")[1]
    r = run("vm", "show", victim, "--project", "demo")
    assert r.returncode == 0, r.stderr
    assert "preempted" in r.stdout and "spot" in r.stdout and "demo/hi" in r.stdout
    one_error_line(run("vm", "create", "x", "--demand", "vcpu=1", "--class", "urgent", "--project", "demo"),
                   "priority_class")


def test_queue_list_discipline_and_unqueue(server: Server, run: Callable[..., Any]) -> None:
    queued = None
    for i in range(7):  # fill the pool until a spot request has to wait
        r = run("vm", "create", f"qf{i}", "--demand", WHOLE_HOST, "--class", "spot", "--queue",
                "--duration", "30", "--project", "demo")
        assert r.returncode == 0, r.stderr
        if "queued" in r.stdout:
            queued = f"qf{i}"
            break
    assert queued is not None
    rows = json.loads(run("vm", "queued", "--project", "demo", "--json").stdout)
    assert [q["name"] for q in rows] == [queued] and rows[0]["duration_s"] == 30
    r = run("vm", "queued", "--project", "demo")
    assert r.returncode == 0 and queued in r.stdout
    r = run("pool", "queue-discipline", "demo", "sjf")
    assert r.returncode == 0 and "sjf" in r.stdout, r.stderr
    one_error_line(run("pool", "queue-discipline", "demo", "lottery"), "discipline")
    r = run("vm", "unqueue", queued, "--project", "demo")
    assert r.returncode == 0, r.stderr
    assert json.loads(run("vm", "queued", "--project", "demo", "--json").stdout) == []
    one_error_line(run("vm", "unqueue", queued, "--project", "demo"), "no request")
