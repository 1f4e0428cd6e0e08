"""The real dataplane: a project's networks and routers as Linux namespaces, TCP across them,
isolation between projects (overlapping subnets), a link failure and re-convergence.

Marked real: skipped without root / `ip netns` (failing with POOLVISOR_REQUIRE_REAL=1). Every
namespace has a unique prefix and is removed by a finalizer, also when the test fails; the TCP
servers run inside the test's own namespaces and are killed first.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from conftest import require_real
from poolvisor.drivers import netns
from poolvisor.services import Services, open_services

pytestmark = pytest.mark.real
PORT = 7070
SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    with c:
        c.recv(64)
        c.sendall(sys.argv[3].encode())
"""
CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.sendall(b"ping")
    print(c.recv(64).decode())
except OSError as e:
    print(f"ERR {type(e).__name__}: {e}")
    sys.exit(1)
"""


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-I", "-S", *args]


def tcp(ns: str, address: str, timeout: float = 2.0) -> str:
    """What the server at address:PORT answers a client in namespace `ns` ('ERR ...' on failure)."""
    r = subprocess.run(in_ns(ns, "-c", CLIENT, address, str(PORT), str(timeout)), capture_output=True,
                       text=True, timeout=timeout + 10)
    return r.stdout.strip() or r.stderr.strip()


def unreachable(answer: str) -> bool:
    """The connection found no path (timeout, host/network unreachable), as opposed to reaching a
    host that refused it or answered."""
    return answer.startswith("ERR") and "Refused" not in answer and (
        "timed out" in answer or "unreachable" in answer.lower() or "Timeout" in answer)


def route_dev(ns: str, address: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "route", "get", address], capture_output=True, text=True).stdout
    return out.split(" dev ")[1].split()[0] if " dev " in out else out.strip()


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    ok, why = netns.available()
    require_real(ok, why)
    monkeypatch.setenv("POOLVISOR_DATAPLANE", "1")
    p = "t" + secrets.token_hex(3)
    yield p
    left = netns.namespaces_with_prefix(p)
    netns.destroy(left, p)


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.communicate(timeout=10)  # reaps it and closes its pipes


def serve(servers: list[subprocess.Popen[str]], ns: str, address: str, ident: str) -> None:
    proc = subprocess.Popen(in_ns(ns, "-c", SERVER, address, str(PORT), ident), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    servers.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr


def build(svc: Services, protocol: str = "distance-vector") -> None:
    """Project a: lan1 - r1 = (ta cost 1 | tb cost 10) = r2 - lan2, `protocol`, workloads w1 on
    lan1 and w2 on lan2, each with a second NIC on an IPv6 network (v6a, v6b joined by transit t6).
    Project b: the same subnets lan1 10.1.0.0/24 and lanb 10.2.0.0/24 joined by its own router rb,
    workloads b1 and b2 (the same addresses as w1 and w2)."""
    svc.catalog.create_pool("p")
    svc.hosts.create_host("h0", {"vcpu": 64, "memory_mib": 65536}, pool="p")
    svc.catalog.create_flavor("unit", {"vcpu": 1, "memory_mib": 256})
    svc.catalog.create_project("a")
    svc.catalog.create_project("b")
    for name, cidr in (("lan1", "10.1.0.0/24"), ("lan2", "10.2.0.0/24"), ("ta", "10.9.1.0/24"),
                       ("tb", "10.9.2.0/24")):
        svc.networks.create_network("a", name, cidr)
    for r, lan in (("r1", "lan1"), ("r2", "lan2")):
        svc.routers.create_router("a", r, protocol)
        svc.routers.attach_router("a", r, lan)
        svc.routers.attach_router("a", r, "ta", cost=1)
        svc.routers.attach_router("a", r, "tb", cost=10)
    for name, cidr, router in (("v6a", "fd00:1::/64", "r1"), ("v6b", "fd00:2::/64", "r2"),
                               ("t6", "fd00:9::/64", "r1"), ("t6", "fd00:9::/64", "r2")):
        if name not in {n.name for n in svc.networks.list_networks("a")}:
            svc.networks.create_network("a", name, cidr)
        svc.routers.attach_router("a", router, name)
    svc.workloads.create_workload("a", "w1", flavor="unit", networks=["lan1", "v6a"])
    svc.workloads.create_workload("a", "w2", flavor="unit", networks=["lan2", "v6b"])
    svc.networks.create_network("b", "lan1", "10.1.0.0/24")
    svc.networks.create_network("b", "lanb", "10.2.0.0/24")
    svc.routers.create_router("b", "rb", "link-state")
    svc.routers.attach_router("b", "rb", "lan1")
    svc.routers.attach_router("b", "rb", "lanb")
    svc.workloads.create_workload("b", "b1", flavor="unit", networks=["lan1"])
    svc.workloads.create_workload("b", "b2", flavor="unit", networks=["lanb"])


@pytest.mark.parametrize("protocol", ["distance-vector", "path-vector"])
def test_namespaces_route_isolate_and_reconverge(tmp_path, prefix, servers, protocol):
    t0 = time.monotonic()
    svc = open_services(f"sqlite:///{tmp_path / 'net.db'}")
    try:
        build(svc, protocol)
        a = svc.dataplane.apply_network("a", prefix)
        b = svc.dataplane.apply_network("b", prefix)
        ns = {**{f"a:{k}": v for k, v in a.detail["namespaces"].items()},
              **{f"b:{k}": v for k, v in b.detail["namespaces"].items()}}
        assert len(a.created) >= 7 + 2 + 2 and a.down_links == [] and a.routes >= 4
        assert set(netns.namespaces_with_prefix(prefix)) == set(ns.values())
        w1, w2, b1, b2 = (ns["a:workload/w1"], ns["a:workload/w2"], ns["b:workload/b1"], ns["b:workload/b2"])
        r1, r2 = ns["a:router/r1"], ns["a:router/r2"]
        assert svc.networks.list_nics("a", workload="w2")[0].address == \
            svc.networks.list_nics("b", workload="b2")[0].address
        serve(servers, w2, "10.2.0.2", "w2")
        serve(servers, b2, "10.2.0.2", "b2")
        # across three networks and two routers, on the cheap transit network; and over IPv6
        assert tcp(w1, "10.2.0.2") == "w2"
        w2_v6 = svc.networks.list_nics("a", workload="w2")[1].address
        assert w2_v6 == "fd00:2::2"
        serve(servers, w2, w2_v6, "w2-v6")
        assert tcp(w1, w2_v6) == "w2-v6"
        ta_dev = route_dev(r1, "10.9.1.2")
        tb_dev = route_dev(r1, "10.9.2.2")
        assert route_dev(r1, "10.2.0.2") == ta_dev != tb_dev
        # projects are isolated: the same address reaches each project's own workload only, and
        # a listener on a's transit network is out of b's reach (no route: not even refused)
        assert tcp(b1, "10.2.0.2") == "b2"
        serve(servers, r2, "10.9.1.2", "r2")
        assert tcp(w1, "10.9.1.2") == "r2"
        assert unreachable(tcp(b1, "10.9.1.2", timeout=1.0))
        assert unreachable(tcp(b2, "10.9.1.2", timeout=1.0))
        # pull r1's cable on the cheap transit network: the kernel sees the carrier go
        bridge_ns, port = a.detail["ports"]["r1/ta"].split("/")
        subprocess.run(["ip", "-n", bridge_ns, "link", "set", port, "down"], check=True)
        assert unreachable(tcp(w1, "10.2.0.2", timeout=1.0))  # broken until routes re-converge
        again = svc.dataplane.apply_network("a", prefix)
        assert again.created == [] and again.down_links == ["r1/ta"]
        assert again.rounds is not None and again.rounds >= 1 and again.recompute_s < 5
        assert route_dev(r1, "10.2.0.2") == tb_dev and route_dev(r2, "10.1.0.2") == route_dev(r2, "10.9.2.1")
        assert tcp(w1, "10.2.0.2") == "w2"  # through the alternative path
        assert tcp(b1, "10.2.0.2") == "b2"
        # the cable back: the cheap path returns
        subprocess.run(["ip", "-n", bridge_ns, "link", "set", port, "up"], check=True)
        healed = svc.dataplane.apply_network("a", prefix)
        assert healed.down_links == [] and route_dev(r1, "10.2.0.2") == ta_dev
        assert tcp(w1, "10.2.0.2") == "w2"
        for proc in servers:
            proc.kill()
            proc.communicate(timeout=10)
        servers.clear()
        gone = svc.dataplane.teardown_network("a", prefix)
        assert set(gone) == {v for k, v in ns.items() if k.startswith("a:")}
        assert set(netns.namespaces_with_prefix(prefix)) == {v for k, v in ns.items() if k.startswith("b:")}
        svc.dataplane.teardown_network("b", prefix)
        assert netns.namespaces_with_prefix(prefix) == []
    finally:
        svc.close()
    assert time.monotonic() - t0 < 60
