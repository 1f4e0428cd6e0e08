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
