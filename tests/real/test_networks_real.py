"""poolvisor networks as libvirt networks on a lab host: a workload with a NIC on a poolvisor
network gets that network defined on its host on demand (an isolated bridge), its NIC on it with
the MAC poolvisor allocated; the libvirt network goes when the last NIC on it leaves the host."""

from __future__ import annotations

import shutil

import pytest
from tests_real_helpers import assert_host_empty, lab_config

from poolvisor.drivers.libvirt import LibvirtDriver
from poolvisor.drivers.libvirt_xml import interfaces
from poolvisor.lab import GuestImage, Lab
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
