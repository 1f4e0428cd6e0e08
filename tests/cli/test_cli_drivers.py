"""`poolvisor host add --driver --uri --fence` and `poolvisor sim ...` against a real `poolvisor serve
--demo` (which mounts the sim admin extension)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from test_cli_serve import Server, one_error_line, run, server  # noqa: F401 - fixtures for this module


def test_host_add_with_a_driver_takes_the_nodes_capacity(server: Server, run: Callable[..., Any]) -> None:  # noqa: F811
    uri = "sim://rack9?vcpu=12&memory_mib=24576"
    r = run("host", "add", "n9", "--driver", "sim", "--uri", uri, "--fence", "command:/bin/true", "--json")
    assert r.returncode == 0, r.stderr
    h = json.loads(r.stdout)
    assert h["capacity"]["vcpu"] == 12 and h["capacity"]["memory_mib"] == 24576
    assert (h["driver"], h["uri"], h["fence"]) == ("sim", uri, "command:/bin/true")
    shown = run("host", "show", "n9")
    assert shown.returncode == 0 and "command:/bin/true" in shown.stdout and "rack9" in shown.stdout
    one_error_line(run("host", "add", "n10", "--driver", "vmware", "--capacity", "vcpu=1"), "unknown driver")
    one_error_line(run("host", "add", "n10", "--fence", "ipmi", "--capacity", "vcpu=1"), "fence")
    one_error_line(run("host", "add", "n10", "--driver", "sim", "--uri", "sim://empty"), "no capacity")
    assert run("host", "state", "n9", "fenced").returncode == 0  # /bin/true: fenced
    assert run("host", "delete", "n9").returncode == 0


def test_sim_fail_revive_inject(server: Server, run: Callable[..., Any]) -> None:  # noqa: F811
    r = run("sim", "fail", "demo-004", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "down", r.stderr
    r = run("sim", "revive", "demo-004")
    assert r.returncode == 0 and "demo-004: up (revived)" in r.stdout
    r = run("sim", "inject", "create", "--host", "demo-004", "--times", "2")
    assert r.returncode == 0 and "next 2 create operation(s) on demo-004 will fail" in r.stdout
    one_error_line(run("sim", "inject", "teleport"), "unknown sim operation")
    one_error_line(run("sim", "fail", "nope"), "not found")
    r = run("host", "fail", "demo-004")  # gone from `host`: a usage error
    assert r.returncode == 2 and "No such command" in r.stderr


def test_vm_snapshot_commands(server: Server, run: Callable[..., Any]) -> None:  # noqa: F811
    assert run("vm", "create", "snappy", "--flavor", "tiny", "--project", "demo").returncode == 0
    r = run("vm", "snapshot", "create", "snappy", "before", "--project", "demo")
    assert r.returncode == 0 and "snappy: snapshot before taken on demo-" in r.stdout, r.stdout + r.stderr
    listed = json.loads(run("vm", "snapshot", "list", "snappy", "--project", "demo", "--json").stdout)
    assert [(s["name"], s["state"]) for s in listed] == [("before", "ready")]
    assert "before" in run("vm", "snapshot", "list", "snappy", "--project", "demo").stdout
    assert run("vm", "stop", "snappy", "--project", "demo").returncode == 0
    r = run("vm", "snapshot", "restore", "snappy", "before", "--project", "demo")
    assert r.returncode == 0 and "restored to snapshot before (running)" in r.stdout, r.stdout + r.stderr
    one_error_line(run("vm", "snapshot", "create", "snappy", "before", "--project", "demo"), "already has")
    r = run("vm", "snapshot", "delete", "snappy", "before", "--project", "demo")
    assert r.returncode == 0 and "snapshot before deleted" in r.stdout
    one_error_line(run("vm", "snapshot", "restore", "snappy", "before", "--project", "demo"), "no snapshot")
    assert run("vm", "delete", "snappy", "--project", "demo").returncode == 0
