"""`poolvisor ip|network` against a real `poolvisor serve` (the module's server from test_cli_serve)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_cli_serve import CLI, Server, clean_env, free_port, one_error_line, run, server  # noqa: F401

from conftest import require_real
from live_server import live_server
from poolvisor.drivers import netns


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
    assert "dhcp" in r.stdout and "10.6.0.254" in r.stdout  # the hosts' DHCP server address
    r = run("network", "list", "--project", "cli-net", "--json")
    assert [(n["name"], n["nics"], n["free"]) for n in json.loads(r.stdout)] == [("lan", 1, 251)]
    one_error_line(run("network", "delete", "lan", "--project", "cli-net"), "1 NIC")
    one_error_line(run("vm", "create", "v2", "--flavor", "small", "-p", "cli-net", "--network", "nope"),
                   "network 'nope' not found")
    r = run("vm", "create-batch", "--flavor", "small", "--count", "2", "--prefix", "b", "-p", "cli-net",
            "--network", "lan")
    assert r.returncode == 0, r.stderr
    r = run("network", "show", "lan", "--project", "cli-net")
    assert all(x in r.stdout for x in ("b-1", "b-2", "10.6.0.3/24", "10.6.0.4/24")), r.stdout
    one_error_line(run("vm", "create-batch", "--flavor", "small", "--count", "1", "--prefix", "c",
                       "-p", "cli-net", "--network", "nope"), "network 'nope' not found")
    for w in ("v1", "b-1", "b-2"):
        assert run("vm", "delete", w, "--project", "cli-net").returncode == 0
    assert run("network", "delete", "lan", "--project", "cli-net").returncode == 0


def test_router_and_route_commands(run: Callable[..., Any]) -> None:  # noqa: F811
    assert run("project", "create", "cli-rt").returncode == 0
    for name, cidr in (("lan1", "10.1.0.0/24"), ("lan2", "10.2.0.0/24"), ("ta", "10.9.1.0/24"),
                       ("tb", "10.9.2.0/24")):
        assert run("network", "create", name, cidr, "-p", "cli-rt").returncode == 0
    for r, lan in (("r1", "lan1"), ("r2", "lan2")):
        assert run("router", "create", r, "--protocol", "distance-vector", "-p", "cli-rt").returncode == 0
        assert run("router", "attach", r, lan, "-p", "cli-rt").returncode == 0
        assert run("router", "attach", r, "ta", "-p", "cli-rt").returncode == 0
        r = run("router", "attach", r, "tb", "--cost", "10", "-p", "cli-rt")
        assert r.returncode == 0 and "(cost 10)" in r.stdout, r.stderr
    r = run("route", "lookup", "r1", "10.2.0.5", "-p", "cli-rt")
    assert r.returncode == 0, r.stderr
    assert "10.2.0.0/24 via 10.9.1.2 (ta) (distance-vector, metric 2)" in r.stdout, r.stdout
    r = run("router", "link", "r1", "ta", "down", "-p", "cli-rt")
    assert r.returncode == 0 and "down" in r.stdout
    r = run("route", "list", "r1", "-p", "cli-rt")
    assert r.returncode == 0 and "10.9.2.2 (tb)" in r.stdout and "distance-vector rounds" in r.stdout
    t = json.loads(run("route", "list", "r1", "-p", "cli-rt", "--json").stdout)
    assert t["rounds"] >= 1 and next(x for x in t["routes"] if x["prefix"] == "10.2.0.0/24")["metric"] == 11
    assert run("route", "add", "r1", "0.0.0.0/0", "--via", "10.9.2.2", "-p", "cli-rt").returncode == 0
    assert "0.0.0.0/0" in run("route", "lookup", "r1", "8.8.8.8", "-p", "cli-rt").stdout
    assert run("route", "delete", "r1", "0.0.0.0/0", "-p", "cli-rt").returncode == 0
    assert "no route" in run("route", "lookup", "r1", "8.8.8.8", "-p", "cli-rt").stdout
    one_error_line(run("route", "add", "r1", "10.0.0.0/8", "--via", "192.0.2.1", "-p", "cli-rt"),
                   "not on a network")
    one_error_line(run("router", "link", "r1", "ta", "sideways", "-p", "cli-rt"), "state")
    r = run("router", "show", "r1", "-p", "cli-rt")
    assert r.returncode == 0 and "10.9.1.1/24" in r.stdout
    assert run("router", "detach", "r1", "tb", "-p", "cli-rt").returncode == 0
    assert run("router", "delete", "r1", "-p", "cli-rt").returncode == 0
    assert "r2" in run("router", "list", "-p", "cli-rt").stdout


@pytest.fixture(scope="module")
def dataplane_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """A `poolvisor serve` of its own, started with POOLVISOR_DATAPLANE=1."""
    tmp = tmp_path_factory.mktemp("dpserve")
    env = {**clean_env(tmp / "home"), "POOLVISOR_DATAPLANE": "1"}
    with live_server(tmp, "--demo", "2", "--log-level", "warning", "--controller-interval", "0",
                     env=env) as live:
        yield Server(live.url, live.env, live.home, live.proc)


def test_network_apply_is_disabled_without_the_opt_in(run: Callable[..., Any]) -> None:  # noqa: F811
    one_error_line(run("network", "apply", "-p", "demo", "--prefix", "nope"), "POOLVISOR_DATAPLANE=1")


@pytest.mark.real
def test_network_apply_and_teardown_through_the_server(dataplane_server: Server) -> None:
    ok, why = netns.available()
    require_real(ok, why)
    prefix = "c" + secrets.token_hex(3)
    cli = dataplane_server.cli
    try:
        assert cli("project", "create", "cli-dp").returncode == 0
        assert cli("network", "create", "lan", "10.8.0.0/24", "-p", "cli-dp").returncode == 0
        assert cli("router", "create", "gw", "-p", "cli-dp").returncode == 0
        assert cli("router", "attach", "gw", "lan", "-p", "cli-dp").returncode == 0
        r = cli("vm", "create", "v", "--flavor", "small", "-p", "cli-dp", "--network", "lan")
        assert r.returncode == 0, r.stderr
        r = cli("network", "apply", "-p", "cli-dp", "--prefix", prefix)
        assert r.returncode == 0, r.stderr
        assert "router/gw" in r.stdout and "workload/v" in r.stdout and "routes programmed" in r.stdout
        made = netns.namespaces_with_prefix(prefix)
        assert len(made) == 3  # the network, the router, the workload
        out = json.loads(cli("network", "apply", "-p", "cli-dp", "--prefix", prefix, "--json").stdout)
        assert out["created"] == [] and out["down_links"] == []
        one_error_line(cli("network", "apply", "-p", "cli-dp", "--prefix", "Bad-Prefix"), "prefix")
        r = cli("network", "teardown", "-p", "cli-dp", "--prefix", prefix)
        assert r.returncode == 0 and "3 namespace(s) deleted" in r.stdout
        assert netns.namespaces_with_prefix(prefix) == []
    finally:
        netns.destroy(netns.namespaces_with_prefix(prefix), prefix)
