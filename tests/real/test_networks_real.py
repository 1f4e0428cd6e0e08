"""poolvisor networks as libvirt networks on a lab host: a workload with a NIC on a poolvisor
network gets that network defined on its host on demand (an isolated bridge), its NIC on it with
the MAC poolvisor allocated; the libvirt network goes when the last NIC on it leaves the host. The
guest learns its address by DHCP (static host entries), and `network apply` joins the bridges to
the project's namespace dataplane, whose routers route between them."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys

import pytest
from tests_real_helpers import assert_host_empty, lab_config

from poolvisor.drivers import netns
from poolvisor.drivers.libvirt import LibvirtDriver
from poolvisor.drivers.libvirt_xml import dhcp_hosts, interfaces
from poolvisor.lab import GuestImage, Lab
from poolvisor.lab.console import dhcp_leases, wait_for
from poolvisor.services import open_services
from realenv import require_real

pytestmark = pytest.mark.real
DEMAND = {"vcpu": 1, "memory_mib": 96, "disk_gib": 0.0625}


def _nets(uri: str) -> dict[str, bool]:
    import libvirt

    conn = libvirt.open(uri)
    try:
        return {n.name(): bool(n.isActive()) for n in conn.listAllNetworks(0)}
    finally:
        conn.close()


def test_network_is_defined_on_demand_and_removed_with_its_last_nic(tmp_path, lab: Lab,
                                                                     guest_image: GuestImage) -> None:
    import libvirt

    require_real(shutil.which("iptables") is not None, "iptables (libvirt 9 networks apply firewall rules)")
    h, h2 = lab.hosts[0], lab.hosts[1]
    cfg = lab_config(lab, guest_image)
    svc = open_services(f"sqlite:///{tmp_path / 'n.db'}", driver="libvirt",
                        driver_options={f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
    conn = libvirt.open(h.uri)
    try:
        svc.hosts.create_host(h.name, driver="libvirt", uri=h.uri)
        svc.catalog.create_project("nw")
        svc.networks.create_network("nw", "front", "10.61.0.0/24")
        svc.networks.create_network("nw", "back", "10.62.0.0/24")
        assert "pv-nw+front" not in _nets(h.uri)  # nothing on the host before a NIC needs it
        svc.workloads.create_workload("nw", "a", demand=DEMAND, networks=["front", "back"])
        svc.workloads.create_workload("nw", "b", demand=DEMAND, networks=["front"])
        nets = _nets(h.uri)
        assert nets.get("pv-nw+front") is True and nets.get("pv-nw+back") is True
        drv = svc.drivers.driver_of(h.name)
        assert isinstance(drv, LibvirtDriver)
        bridges = drv.networks(h.name)
        assert set(bridges) == {"nw/front", "nw/back"} and all(bridges.values())
        for w in ("a", "b"):
            nics = svc.networks.list_nics("nw", workload=w)
            live = interfaces(conn.lookupByName(f"nw+{w}").XMLDesc(0))
            assert live == {n.mac: f"pv-nw+{n.network}" for n in nics}  # poolvisor's MACs, its networks
        assert [n.address for n in svc.networks.list_nics("nw", workload="a")] == ["10.61.0.2", "10.62.0.2"]

        svc.workloads.delete_workload("nw", "a")  # the last NIC on back goes; b still uses front
        nets = _nets(h.uri)
        assert "pv-nw+back" not in nets and nets.get("pv-nw+front") is True
        # a live migration takes the guest's networks along: defined on the destination first,
        # gone from the source once its last NIC left
        svc.hosts.create_host(h2.name, driver="libvirt", uri=h2.uri)
        assert svc.workloads.migrate_workload("nw", "b", h2.name).host == h2.name
        assert not any(n.startswith("pv-") for n in _nets(h.uri))
        assert _nets(h2.uri).get("pv-nw+front") is True
        svc.workloads.delete_workload("nw", "b")
        assert not any(n.startswith("pv-") for n in _nets(h2.uri))
    finally:
        conn.close()
        svc.close()
    assert_host_empty(h.uri)
    assert_host_empty(h2.uri)


def _dhcp(uri: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """The static DHCP host entries (MAC -> address) of a libvirt network: live, persistent."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        net = conn.networkLookupByName(name)
        return (dhcp_hosts(net.XMLDesc(0)),
                dhcp_hosts(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)))
    finally:
        conn.close()


def test_guest_gets_its_address_by_dhcp(tmp_path, lab: Lab, guest_image: GuestImage) -> None:
    """The libvirt network serves DHCP for exactly its NICs (static host entries: poolvisor's MAC
    -> its IPAM address, added and removed without restarting the network), and the lab guest's
    udhcpc (busybox) gets that address and the network's gateway as its router, within 60 s; a
    guest created by a batch is plugged and told its address like one created alone."""
    require_real(shutil.which("iptables") is not None, "iptables (libvirt 9 networks apply firewall rules)")
    h = lab.hosts[0]
    cfg = lab_config(lab, guest_image)
    svc = open_services(f"sqlite:///{tmp_path / 'd.db'}", driver="libvirt",
                        driver_options={f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
    try:
        svc.hosts.create_host(h.name, driver="libvirt", uri=h.uri)
        svc.catalog.create_project("dh")
        svc.networks.create_network("dh", "lan", "10.63.0.0/24")  # gateway .1, DHCP server .254
        assert [(r.first, r.kind) for r in svc.networks.list_ip_ranges("dh", "lan")] == \
            [("10.63.0.1", "gateway"), ("10.63.0.254", "dhcp")]
        svc.workloads.create_workload("dh", "g1", demand=DEMAND, networks=["lan"])
        (g1,) = svc.networks.list_nics("dh", workload="g1")
        assert g1.address == "10.63.0.2"
        assert _dhcp(h.uri, "pv-dh+lan") == ({g1.mac: "10.63.0.2"},) * 2
        console = lab.consoles / "dh+g1.log"
        wait_for(lambda: dhcp_leases(console) != [], 60.0, f"a DHCP lease in {console}")
        assert dhcp_leases(console) == [("eth0", "10.63.0.2/24", "10.63.0.1")]

        # the second guest comes from a batch: its NIC is plugged (and told its address) alike
        svc.batch.create_workloads_batch("dh", [{"name": "g2", "demand": DEMAND, "networks": ["lan"]}])
        (g2,) = svc.networks.list_nics("dh", workload="g2")
        assert _dhcp(h.uri, "pv-dh+lan") == ({g1.mac: "10.63.0.2", g2.mac: "10.63.0.3"},) * 2
        svc.workloads.delete_workload("dh", "g1")  # its entry goes, live and persistent
        assert _dhcp(h.uri, "pv-dh+lan") == ({g2.mac: "10.63.0.3"},) * 2
        console2 = lab.consoles / "dh+g2.log"
        wait_for(lambda: dhcp_leases(console2) != [], 60.0, f"a DHCP lease in {console2}")
        assert dhcp_leases(console2) == [("eth0", "10.63.0.3/24", "10.63.0.1")]
        svc.workloads.delete_workload("dh", "g2")
        assert not any(n.startswith("pv-") for n in _nets(h.uri))
    finally:
        svc.close()
    assert_host_empty(h.uri)


# ---- libvirt bridges joined to the namespace dataplane's routers ---------------------------------
SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
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
"""
PORT = 7071


def _in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-I", "-S", *args]


def _tcp(ns: str, address: str, timeout: float = 2.0) -> str:
    r = subprocess.run(_in_ns(ns, "-c", CLIENT, address, str(PORT), str(timeout)), capture_output=True,
                       text=True, timeout=timeout + 10)
    return r.stdout.strip() or r.stderr.strip()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {str(x["ifname"]) for x in json.loads(out)}


def test_guest_bridges_are_routed_by_the_projects_router(tmp_path, lab: Lab, guest_image: GuestImage,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`network apply` joins the bridges of a project's libvirt networks on this machine to its
    namespace dataplane: a machine on guest network lan1 reaches one on lan2 through the project's
    router r1 (and no longer once the dataplane is torn down), and project b, with the same subnet
    lan1 and a guest on the same host, reaches neither. Each libvirt network has a real guest on it
    (that is what makes libvirt define it); the machines talking are namespaces the test plugs into
    the libvirt bridges with IPAM addresses (stand-ins for guests: the busybox guest runs no TCP
    server). Everything the test made (namespaces, veths, guests, networks) is removed."""
    ok, why = netns.available()
    require_real(ok, why)
    require_real(shutil.which("iptables") is not None, "iptables (libvirt 9 networks apply firewall rules)")
    monkeypatch.setenv("POOLVISOR_DATAPLANE", "1")
    prefix = "t" + secrets.token_hex(3)
    h = lab.hosts[0]
    cfg = lab_config(lab, guest_image)
    svc = open_services(f"sqlite:///{tmp_path / 'r.db'}", driver="libvirt",
                        driver_options={f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
    servers: list[subprocess.Popen[str]] = []
    stand_ins: list[str] = []
    try:
        svc.hosts.create_host(h.name, driver="libvirt", uri=h.uri)
        for p in ("a", "b"):
            svc.catalog.create_project(p)
            svc.networks.create_network(p, "lan1", "10.71.1.0/24")
        svc.networks.create_network("a", "lan2", "10.71.2.0/24")
        svc.networks.create_network("b", "lanb", "10.71.2.0/24")  # b's copy of a's lan2 subnet
        for p, r, nets in (("a", "r1", ("lan1", "lan2")), ("b", "rb", ("lan1", "lanb"))):
            svc.routers.create_router(p, r, "link-state")
            for n in nets:
                svc.routers.attach_router(p, r, n)  # takes the gateway .1
        for p, w, n in (("a", "g1", "lan1"), ("a", "g2", "lan2"), ("b", "g3", "lan1")):
            svc.workloads.create_workload(p, w, demand={**DEMAND, "vcpu": 0.5}, networks=[n])  # 3 on h
        drv = svc.drivers.driver_of(h.name)
        assert isinstance(drv, LibvirtDriver)
        bridges = drv.networks(h.name)
        assert set(bridges) == {"a/lan1", "a/lan2", "b/lan1"}
        # b's lan1 is a's subnet on the same host: libvirt refuses a second bridge address in it,
        # so b's copy serves no DHCP here (its guests keep poolvisor's address by other means)
        assert _dhcp(h.uri, "pv-a+lan1")[0] and _dhcp(h.uri, "pv-b+lan1") == ({}, {})

        ra = svc.dataplane.apply_network("a", prefix)
        rb = svc.dataplane.apply_network("b", prefix)
        assert ra.detail["bridges"] == {"lan1": [bridges["a/lan1"]], "lan2": [bridges["a/lan2"]]}
        assert rb.detail["bridges"] == {"lan1": [bridges["b/lan1"]]}
        assert svc.dataplane.apply_network("a", prefix).created == []  # idempotent

        def stand_in(project: str, net: str, tag: str) -> tuple[str, str]:
            """A namespace on the libvirt bridge of project/net with the network's next free
            address (taken from IPAM) and a default route via the network's gateway."""
            ns, veth = f"{prefix}-s{tag}", f"{prefix}s{tag}"
            (got,) = svc.networks.allocate_ip(project, net, owner=f"stand-in {tag}")
            gw = svc.networks.get_network(project, net).gateway
            _ip("netns", "add", ns)
            stand_ins.append(ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", bridges[f"{project}/{net}"], "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{got.first}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", str(gw))
            return ns, got.first

        def serve(ns: str, address: str, ident: str) -> None:
            proc = subprocess.Popen(_in_ns(ns, "-c", SERVER, address, str(PORT), ident),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

        sa1, a1 = stand_in("a", "lan1", "a1")
        sa2, a2 = stand_in("a", "lan2", "a2")
        sb1, b1 = stand_in("b", "lan1", "b1")
        assert a1 == b1 == "10.71.1.3" and a2 == "10.71.2.3"  # the guests hold .2
        for ns, addr, ident in ((sa1, a1, "a1"), (sa2, a2, "a2"), (sb1, b1, "b1")):
            serve(ns, addr, ident)
        assert _tcp(sa1, a2, timeout=5.0) == "a2"  # lan1 -> r1 -> lan2 (ARP may take a moment)
        assert _tcp(sa2, a1) == "a1"  # never b's machine at the same address
        assert _tcp(sb1, a2).startswith("ERR")  # b's lanb has that subnet, but not a's machine
        assert _tcp(sb1, b1) == "b1"

        svc.dataplane.teardown_network("a", prefix)  # a's router goes: lan1 and lan2 are cut apart
        assert _tcp(sa1, a2).startswith("ERR")
    finally:
        for proc in servers:
            proc.kill()
            proc.communicate(timeout=10)
        for ns in stand_ins:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        with contextlib.suppress(Exception):
            for p in ("a", "b"):
                svc.dataplane.teardown_network(p, prefix)
        for p, w in (("a", "g1"), ("a", "g2"), ("b", "g3")):
            with contextlib.suppress(Exception):
                svc.workloads.delete_workload(p, w)
        svc.close()
    assert netns.namespaces_with_prefix(prefix) == [] and not [
        n for n in netns.list_namespaces() if n.startswith(prefix)]
    assert not [n for n in _root_links() if n.startswith(prefix) or n.startswith(f"{prefix[:3]}u")]
    assert not any(n.startswith("pv-") for n in _nets(h.uri))
    assert_host_empty(h.uri)
