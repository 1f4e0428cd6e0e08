"""`poolvisor ip|network` against a real `poolvisor serve` (the module's server from test_cli_serve)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from test_cli_serve import Server, one_error_line, run, server  # noqa: F401 - fixtures


def test_ip_pool_commands(run: Callable[..., Any]) -> None:  # noqa: F811
    r = run("ip", "pool", "create", "lan", "10.5.0.0/29", "--project", "cli-ip")
    one_error_line(r, "project 'cli-ip' not found")
    assert run("project", "create", "cli-ip").returncode == 0
    r = run("ip", "pool", "create", "lan", "10.5.0.0/29", "--project", "cli-ip")
    assert r.returncode == 0 and "10.5.0.1 - 10.5.0.6 (6 addresses)" in r.stdout, r.stderr
    r = run("ip", "alloc", "lan", "--count", "2", "--owner", "web", "--project", "cli-ip")
    assert r.returncode == 0 and r.stdout.strip() == "10.5.0.1 - 10.5.0.2", r.stderr
    r = run("ip", "alloc", "lan", "--address", "10.5.0.2", "--project", "cli-ip")
    one_error_line(r, "10.5.0.2 is not free (address web)")
    r = run("ip", "reserve", "lan", "10.5.0.5", "10.5.0.6", "--note", "static", "-p", "cli-ip")
    assert r.returncode == 0, r.stderr
    assert run("ip", "release", "lan", "10.5.0.1", "--project", "cli-ip").returncode == 0
    r = run("ip", "list", "lan", "--project", "cli-ip", "--json")
    assert [(x["first"], x["last"], x["kind"]) for x in json.loads(r.stdout)] == [
        ("10.5.0.2", "10.5.0.2", "address"), ("10.5.0.5", "10.5.0.6", "reserved")]
    r = run("ip", "list", "lan", "--free", "--project", "cli-ip")
    assert r.returncode == 0 and "10.5.0.1" in r.stdout and "10.5.0.3 - 10.5.0.4" in r.stdout
    r = run("ip", "pool", "show", "lan", "--project", "cli-ip", "--json")
    assert json.loads(r.stdout)["used"] == {"address": 1, "reserved": 2}
    one_error_line(run("ip", "pool", "delete", "lan", "--project", "cli-ip"), "1 allocated")
    one_error_line(run("ip", "pool", "create", "x", "10.5.0.1/24", "--project", "cli-ip"), "host bits")
    one_error_line(run("ip", "alloc", "lan", "--address", "fe80::1", "--project", "cli-ip"), "ipv6")


def test_network_and_vm_nics(run: Callable[..., Any]) -> None:  # noqa: F811
    assert run("project", "create", "cli-net").returncode == 0
    r = run("network", "create", "lan", "10.6.0.0/24", "--project", "cli-net")
    assert r.returncode == 0 and "gateway 10.6.0.1" in r.stdout, r.stderr
    r = run("vm", "create", "v1", "--flavor", "small", "--project", "cli-net", "--network", "lan")
    assert r.returncode == 0, r.stderr
    assert "eth0 on lan: 10.6.0.2/24 mac 02:" in r.stdout
    r = run("network", "show", "lan", "--project", "cli-net")
    assert r.returncode == 0 and "v1" in r.stdout and "10.6.0.2/24" in r.stdout
    r = run("network", "list", "--project", "cli-net", "--json")
    assert [(n["name"], n["nics"], n["free"]) for n in json.loads(r.stdout)] == [("lan", 1, 252)]
    one_error_line(run("network", "delete", "lan", "--project", "cli-net"), "1 NIC")
    one_error_line(run("vm", "create", "v2", "--flavor", "small", "-p", "cli-net", "--network", "nope"),
                   "network 'nope' not found")
    assert run("vm", "delete", "v1", "--project", "cli-net").returncode == 0
    assert run("network", "delete", "lan", "--project", "cli-net").returncode == 0
