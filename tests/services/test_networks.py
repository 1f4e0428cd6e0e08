"""Virtual networks per project: NICs taken at workload creation, given back on every deletion path."""

from __future__ import annotations

from datetime import timedelta

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.drivers.base import DriverError
from poolvisor.services.leases import utcnow


def _free(s, project="demo", net="lan"):
    return s.networks.get_network(project, net).free


def test_workload_nics_come_from_the_network_and_go_back(svc):
    small_cluster(svc)
    n = svc.networks.create_network("demo", "lan", "10.0.0.0/24")
    assert (n.gateway, n.size, n.free, n.family) == ("10.0.0.1", 254, 252, "ipv4")
    svc.networks.create_network("demo", "v6", "fd00:1::/64")
    mac_free = next(p for p in svc.networks.list_ip_pools() if p.family == "mac").free
    svc.workloads.create_workload("demo", "a", flavor="unit", networks=["lan", "v6"])
    svc.workloads.create_workload("demo", "b", flavor="unit", networks=["lan"])
    nics = svc.networks.list_nics("demo")
    got = [(x.workload, x.network, x.index, x.address, x.prefixlen, x.gateway) for x in nics]
    assert got == [("a", "lan", 0, "10.0.0.2", 24, "10.0.0.1"), ("a", "v6", 1, "fd00:1::2", 64, "fd00:1::1"),
                   ("b", "lan", 0, "10.0.0.3", 24, "10.0.0.1")]
    assert len({x.mac for x in nics}) == 3 and all(x.mac.startswith("02:") for x in nics)
    assert [x.workload for x in svc.networks.list_nics("demo", network="lan")] == ["a", "b"]
    assert [x.network for x in svc.networks.list_nics("demo", workload="a")] == ["lan", "v6"]
    assert svc.networks.get_network("demo", "lan").nics == 2
    with pytest.raises(ConflictError, match="2 NIC"):
        svc.networks.delete_network("demo", "lan")
    svc.workloads.delete_workload("demo", "a")
    assert [x.workload for x in svc.networks.list_nics("demo")] == ["b"]
    assert _free(svc) == 251 and _free(svc, net="v6") == 2**64 - 2
    svc.workloads.create_workload("demo", "c", flavor="unit", networks=["lan"])
    assert svc.networks.list_nics("demo", workload="c")[0].address == "10.0.0.2"  # the lowest free again
    svc.workloads.delete_workload("demo", "b")
    svc.workloads.delete_workload("demo", "c")
    assert next(p for p in svc.networks.list_ip_pools() if p.family == "mac").free == mac_free
    assert _free(svc) == 252
    assert svc.networks.check_ipam() == [] and svc.repair.check().ok
    svc.networks.delete_network("demo", "lan")
    assert [x.name for x in svc.networks.list_networks("demo")] == ["v6"]


def test_exhausted_network_refuses_the_workload_and_leaks_nothing(lite):
    small_cluster(lite, hosts=2, vcpu=8)
    lite.networks.create_network("demo", "tiny", "10.0.0.0/29")  # 6 usable, 1 gateway: 5 NICs
    for i in range(5):
        lite.workloads.create_workload("demo", f"w{i}", flavor="unit", networks=["tiny"])
    before = sum(h.allocated["vcpu"] for h in lite.hosts.list_hosts())
    with pytest.raises(ConflictError, match="network 'tiny' has no free address"):
        lite.workloads.create_workload("demo", "w5", flavor="unit", networks=["tiny"])
    assert "w5" not in {w.name for w in lite.workloads.list_workloads("demo")}
    assert sum(h.allocated["vcpu"] for h in lite.hosts.list_hosts()) == before
    assert lite.repair.check().ok and lite.networks.check_ipam() == []


def test_bad_network_requests_create_nothing(lite):
    small_cluster(lite)
    lite.networks.create_network("demo", "lan", "10.0.0.0/24")
    for nets, err in ((["nope"], NotFoundError), (["lan", "lan"], InvalidInputError),
                      (["bad/name"], InvalidInputError), ("lan", InvalidInputError),
                      ([f"n{i}" for i in range(9)], InvalidInputError)):
        with pytest.raises(err):
            lite.workloads.create_workload("demo", "x", flavor="unit", networks=nets)
        with pytest.raises(err):
            lite.workloads.create_workload("demo", "x", flavor="unit", networks=nets, dry_run=True)
    with pytest.raises(NotFoundError):  # no group left behind either
        lite.workloads.create_workload("demo", "x", flavor="unit", group="g", networks=["nope"])
    assert lite.workloads.list_workloads("demo") == [] and lite.networks.list_nics("demo") == []
    assert lite.workloads.create_workload("demo", "x", flavor="unit", networks=["lan"],
                                          dry_run=True).state == "dry-run"
    assert lite.networks.list_nics("demo") == [] and _free(lite) == 252


def test_driver_failure_and_interrupted_create_give_the_nics_back(lite):
    small_cluster(lite)
    lite.networks.create_network("demo", "lan", "10.0.0.0/24")
    lite.driver.inject("create")
    with pytest.raises(DriverError):
        lite.workloads.create_workload("demo", "x", flavor="unit", networks=["lan"])
    assert lite.networks.list_nics("demo") == [] and _free(lite) == 252
    # a crash between the claim and the driver call: start-up repair rolls the creation back
    spec = lite.workloads._resolve("demo", "half", "vm", "unit", None, 0, None, None, {}, {}, None, False)
    from dataclasses import replace

    lite.workloads._place_and_claim(replace(spec, networks=("lan",)))
    assert [n.workload for n in lite.networks.list_nics("demo")] == ["half"]
    assert lite.repair.run() == [] and _free(lite) == 251  # its lease still runs: it may be in flight
    assert len(lite.repair.run(now=utcnow() + timedelta(hours=1))) == 1  # past the lease: rolled back
    assert lite.networks.list_nics("demo") == [] and _free(lite) == 252
    assert lite.repair.check().ok and lite.networks.check_ipam() == []


def test_projects_are_isolated(svc):
    small_cluster(svc)
    svc.catalog.create_project("other")
    svc.networks.create_network("demo", "lan", "10.0.0.0/24")
    svc.networks.create_network("other", "lan", "10.0.0.0/24")  # the same subnet in another project: fine
    with pytest.raises(ConflictError, match="overlaps network 'lan'"):
        svc.networks.create_network("demo", "lan2", "10.0.0.128/25")
    with pytest.raises(ConflictError, match="already exists"):
        svc.networks.create_network("demo", "lan", "10.1.0.0/24")
    svc.networks.create_network("other", "only-other", "10.9.0.0/24")
    with pytest.raises(NotFoundError):  # a workload cannot join another project's network
        svc.workloads.create_workload("demo", "x", flavor="unit", networks=["only-other"])
    svc.workloads.create_workload("demo", "x", flavor="unit", networks=["lan"])
    svc.workloads.create_workload("other", "y", flavor="unit", networks=["lan"])
    assert svc.networks.list_nics("demo", workload="x")[0].address == \
        svc.networks.list_nics("other", workload="y")[0].address
    assert [n.name for n in svc.networks.list_networks("demo")] == ["lan"]
    with pytest.raises(NotFoundError):
        svc.networks.get_network("demo", "only-other")
    with pytest.raises(NotFoundError):
        svc.networks.list_nics("demo", network="only-other")


def test_network_arguments(lite):
    lite.catalog.create_project("demo")
    with pytest.raises(InvalidInputError, match="no room"):
        lite.networks.create_network("demo", "p2p", "10.0.0.0/31")
    with pytest.raises(InvalidInputError, match="not a host address"):
        lite.networks.create_network("demo", "n", "10.0.0.0/24", gateway="10.0.1.1")
    n = lite.networks.create_network("demo", "n", "10.0.0.0/24", gateway="10.0.0.254")
    assert n.gateway == "10.0.0.254" and n.free == 252
    m = lite.networks.create_network("demo", "m", "10.0.1.0/24", no_gateway=True)
    assert m.gateway is None and m.free == 253
    with pytest.raises(ConflictError, match="address pool named"):
        lite.networks.create_ip_pool("demo", "x", "192.168.0.0/24") and \
            lite.networks.create_network("demo", "x", "10.0.2.0/24")
    with pytest.raises(ConflictError, match="belongs to network"):
        lite.networks.delete_ip_pool("demo", "n")
    with pytest.raises(ConflictError, match="held by gateway"):
        lite.networks.release_ip("demo", "n", "10.0.0.254")


def test_check_finds_leaked_and_missing_addresses(lite):
    """`poolvisor check` covers the networks: a leaked NIC address, a NIC whose address is not held,
    a gateway not reserved, and intervals that no longer partition a pool are all reported."""
    from sqlalchemy import delete, insert, update

    from poolvisor.domain.addresses import key
    from poolvisor.store.rows import IpAllocationRow, IpFreeRow

    small_cluster(lite)
    lite.networks.create_network("demo", "lan", "10.0.0.0/24")
    lite.workloads.create_workload("demo", "a", flavor="unit", networks=["lan"])
    assert lite.repair.check().ok
    pool_id = lite.ctx.read(lambda s: s.scalar(select_pool_id()))

    def tamper(stmt):
        lite.ctx.write(lambda s: s.execute(stmt))

    tamper(insert(IpAllocationRow).values(pool_id=pool_id, first=key(0x0A0000C8), last=key(0x0A0000C8),
                                          kind="nic", owner="ghost"))
    report = lite.repair.check()
    assert not report.ok
    assert any("2 nic address(es) held but 1 nic object(s)" in x for x in report.violations)
    assert any("10.0.0.200 (nic) overlaps" in x for x in report.violations), report.violations
    tamper(delete(IpAllocationRow).where(IpAllocationRow.owner == "ghost"))
    assert lite.repair.check().ok
    tamper(update(IpAllocationRow).where(IpAllocationRow.kind == "gateway").values(kind="address"))
    assert any("gateway 10.0.0.1 is not reserved" in x for x in lite.repair.check().violations)
    tamper(update(IpAllocationRow).values(kind="router")
           .where(IpAllocationRow.pool_id == pool_id, IpAllocationRow.first == key(0x0A000002)))
    assert any("NIC" in x and "10.0.0.2 is not held as nic" in x for x in lite.repair.check().violations)
    tamper(delete(IpFreeRow).where(IpFreeRow.pool_id == pool_id))
    # the hole between the NIC and the DHCP server's address (10.0.0.254, reserved at creation)
    hole = "10.0.0.3-10.0.0.253 is neither free nor allocated"
    assert any(hole in x for x in lite.repair.check().violations)
    tamper(delete(IpAllocationRow).where(IpAllocationRow.pool_id == pool_id, IpAllocationRow.kind == "dhcp"))
    assert any("intervals end at 10.0.0.2, not at 10.0.0.254" in x for x in lite.repair.check().violations)


def select_pool_id():
    from sqlalchemy import select

    from poolvisor.store.rows import NetworkRow

    return select(NetworkRow.pool_id).where(NetworkRow.name == "lan")


def test_dhcp_server_address_is_reserved_and_reaches_the_driver(lite):
    """An IPv4 network of a /28 or more reserves its last usable address (kind dhcp, the one
    before when that is the gateway) for the hosts' DHCP servers; smaller and IPv6 networks none.
    The NIC the driver gets names that server and the gateway."""
    from poolvisor.drivers.sim import SimDriver

    small_cluster(lite)
    kinds = {}
    for name, cidr, kw in (("lan", "10.0.0.0/24", {}), ("l28", "10.0.1.0/28", {}), ("l29", "10.0.2.0/29", {}),
                           ("gw", "10.0.3.0/24", {"gateway": "10.0.3.254"}), ("v6", "fd00:1::/64", {}),
                           ("nogw", "10.0.4.0/24", {"no_gateway": True})):
        lite.networks.create_network("demo", name, cidr, **kw)
        kinds[name] = [(r.first, r.kind) for r in lite.networks.list_ip_ranges("demo", name)]
    assert kinds == {"lan": [("10.0.0.1", "gateway"), ("10.0.0.254", "dhcp")],
                     "l28": [("10.0.1.1", "gateway"), ("10.0.1.14", "dhcp")],
                     "l29": [("10.0.2.1", "gateway")],
                     "gw": [("10.0.3.253", "dhcp"), ("10.0.3.254", "gateway")],
                     "v6": [("fd00:1::1", "gateway")],
                     "nogw": [("10.0.4.254", "dhcp")]}
    assert {n.name: n.dhcp for n in lite.networks.list_networks("demo")} == {
        "lan": "10.0.0.254", "l28": "10.0.1.14", "l29": None, "gw": "10.0.3.253", "v6": None,
        "nogw": "10.0.4.254"}
    with pytest.raises(ConflictError, match="held by dhcp"):
        lite.networks.release_ip("demo", "lan", "10.0.0.254")
    lite.workloads.create_workload("demo", "a", flavor="unit", networks=["lan", "v6", "nogw"])
    host = lite.workloads.get_workload("demo", "a").host
    sim = lite.drivers.driver_of(host)
    assert isinstance(sim, SimDriver)
    specs = sorted(sim.hosts[host].guests["demo/a"].nics.values(), key=lambda n: n.network)
    assert [(n.network, n.address, n.gateway, n.dhcp) for n in specs] == [
        ("demo/lan", "10.0.0.2/24", "10.0.0.1", "10.0.0.254"), ("demo/nogw", "10.0.4.1/24", "", "10.0.4.254"),
        ("demo/v6", "fd00:1::2/64", "fd00:1::1", "")]
    assert lite.repair.check().ok
    lite.workloads.delete_workload("demo", "a")
    lite.networks.delete_network("demo", "lan")  # its DHCP address goes with its pool
    assert lite.repair.check().ok
