"""poolvisor networks as libvirt networks on a lab host: a workload with a NIC on a poolvisor
network gets that network defined on its host on demand (an isolated bridge), its NIC on it with
the MAC poolvisor allocated; the libvirt network goes when the last NIC on it leaves the host."""

from __future__ import annotations

import shutil

import pytest
from tests_real_helpers import assert_host_empty, lab_config

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
    udhcpc (busybox) gets that address and the network's gateway as its router, within 60 s."""
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

        svc.workloads.create_workload("dh", "g2", demand=DEMAND, networks=["lan"])
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
