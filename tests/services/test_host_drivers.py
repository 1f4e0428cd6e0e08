"""Hosts bound to drivers: capacity from the node, two sim URIs in one pool, rebinding after a
restart, and a mixed pool where a host's driver cannot migrate (409 before anything moves)."""

from __future__ import annotations

import pytest

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.drivers import register_driver
from poolvisor.drivers.base import DriverError
from poolvisor.drivers.protocols import UnsupportedByDriver
from poolvisor.drivers.registry import DRIVERS
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services, open_services

A = "sim://rack-a?vcpu=8&memory_mib=8192"
B = "sim://rack-b?vcpu=16&memory_mib=16384"


def two_uri_pool(s: Services) -> None:
    s.catalog.create_project("demo")
    s.catalog.create_flavor("unit", {"vcpu": 1, "memory_mib": 1024})
    s.hosts.create_host("a1", driver="sim", uri=A, labels={"rack": "a"})
    s.hosts.create_host("b1", driver="sim", uri=B, labels={"rack": "b"})


def test_capacity_comes_from_the_node_and_each_uri_is_its_own_driver(sqlite_url: str) -> None:
    s = open_services(sqlite_url)
    try:
        two_uri_pool(s)
        a1, b1 = s.hosts.get_host("a1"), s.hosts.get_host("b1")
        assert a1.capacity["vcpu"] == 8 and b1.capacity["memory_mib"] == 16384
        assert (a1.driver, a1.uri, a1.fence) == ("sim", A, "driver")
        da, db = s.drivers.driver_of("a1"), s.drivers.driver_of("b1")
        assert da is not db and isinstance(da, SimDriver) and isinstance(db, SimDriver)
        w = s.workloads.create_workload("demo", "vm1", flavor="unit")
        src, dst = (da, db) if w.host == "a1" else (db, da)
        assert set(da.hosts) == {"a1"} and set(db.hosts) == {"b1"}
        assert src.stats(w.host).states == {"demo/vm1": "running"}
        m = s.workloads.migrate_workload("demo", "vm1")  # across URIs: the sim instances share a fabric
        assert m.host != w.host and src.stats(w.host).workloads == 0 and dst.stats(m.host).workloads == 1
        assert s.repair.check().ok
    finally:
        s.close()
    s = open_services(sqlite_url)  # a restart binds every host again from its row
    try:
        assert s.drivers.binding("a1").uri == A and s.drivers.driver_of("b1") is s.drivers.instance("sim", B)
        assert s.drivers.driver_of("a1") is not s.drivers.driver_of("b1")
        s.workloads.delete_workload("demo", "vm1")
        s.hosts.delete_host("a1")
        assert "a1" not in {b.name for b in s.drivers.bindings()}
    finally:
        s.close()


def test_bad_host_drivers_are_refused_without_touching_existing_hosts(lite: Services) -> None:
    two_uri_pool(lite)
    with pytest.raises(NotFoundError, match="unknown driver 'vmware'"):
        lite.hosts.create_host("x", {"vcpu": 1}, driver="vmware")
    with pytest.raises(InvalidInputError, match="printable ASCII"):
        lite.hosts.create_host("x", {"vcpu": 1}, uri="sim://a b")
    with pytest.raises(ConflictError, match="already exists"):
        lite.hosts.create_host("a1", driver="sim", uri=B)  # asks no node: the name is taken
    assert lite.drivers.binding("a1").uri == A
    with pytest.raises(InvalidInputError, match="no capacity"):
        lite.hosts.create_host("bare", driver="sim", uri="sim://nothing")
    assert "bare" not in {h.name for h in lite.hosts.list_hosts()}


class BoxDriver(SimDriver):
    """A container-like driver: the sim's lifecycle, but it declares no migration."""

    name = "box"
    capabilities = frozenset(SimDriver.capabilities - {"migration"})  # type: ignore[operator]


@pytest.fixture
def box():
    register_driver("box", BoxDriver)
    yield
    DRIVERS.pop("box")


def test_a_mixed_pool_moves_workloads_only_between_hosts_of_one_driver(lite: Services, box: None) -> None:
    lite.catalog.create_project("demo")
    lite.catalog.create_flavor("unit", {"vcpu": 1, "memory_mib": 1024})
    for name, driver in (("s1", "sim"), ("s2", "sim"), ("c1", "box"), ("c2", "box")):
        lite.hosts.create_host(name, {"vcpu": 8, "memory_mib": 8192}, driver=driver, labels={"k": driver})
    w = lite.workloads.create_workload("demo", "ct", flavor="unit", required_labels={"k": "box"})
    assert w.host in ("c1", "c2")
    with pytest.raises(UnsupportedByDriver, match=f"driver 'box' of host {w.host} cannot live-migrate"):
        lite.workloads.migrate_workload("demo", "ct")
    ct = lite.workloads.get_workload("demo", "ct")
    assert (ct.state, ct.host) == ("running", w.host)
    v = lite.workloads.create_workload("demo", "vm", flavor="unit", required_labels={"k": "sim"})
    for _ in range(3):  # back and forth: never onto a box host, though those have room
        v2 = lite.workloads.migrate_workload("demo", "vm")
        assert v2.host in ("s1", "s2") and v2.host != v.host
        v = v2
    with pytest.raises(ConflictError, match="host c1 is not run by driver 'sim'"):
        lite.workloads.migrate_workload("demo", "vm", host="c1")
    assert lite.repair.check().ok


def test_a_host_of_a_driver_this_server_lacks_is_503_not_a_crash(sqlite_url: str, box: None) -> None:
    s = open_services(sqlite_url)
    try:
        s.catalog.create_project("demo")
        s.hosts.create_host("c1", {"vcpu": 4}, driver="box")
        s.hosts.create_host("s1", {"vcpu": 4})
    finally:
        s.close()
    DRIVERS.pop("box")  # a server without that driver opens the same database
    try:
        s = open_services(sqlite_url)
        try:
            assert s.hosts.get_host("c1").driver == "box"
            with pytest.raises(DriverError, match="driver 'box' is not available") as e:
                s.drivers.lifecycle("c1")
            assert e.value.status_code == 503
            s.drivers.lifecycle("s1")  # the other hosts work
            with pytest.raises(InvalidInputError, match="not a number"):
                s.hosts.create_host("bad", driver="sim", uri="sim://?vcpu=lots")
        finally:
            s.close()
    finally:
        register_driver("box", BoxDriver)


def test_a_migration_the_hosts_driver_cannot_do_is_refused_at_submit(lite: Services, box: None) -> None:
    lite.catalog.create_project("demo")
    lite.catalog.create_flavor("unit", {"vcpu": 1})
    for name in ("c1", "c2"):
        lite.hosts.create_host(name, {"vcpu": 4}, driver="box")
    lite.workloads.create_workload("demo", "ct", flavor="unit")
    with pytest.raises(UnsupportedByDriver, match="cannot live-migrate"):
        lite.workloads.submit_migrate("demo", "ct")
    assert lite.tasks.list_tasks() == []  # nothing queued


def test_a_host_whose_node_cannot_be_reached_is_not_recorded(lite: Services) -> None:
    class Unreachable(SimDriver):
        name = "far"

        def connect(self, host):
            raise DriverError(f"cannot reach {self.uri}")

    register_driver("far", Unreachable)
    try:
        with pytest.raises(DriverError, match="cannot reach qemu"):
            lite.hosts.create_host("f1", {"vcpu": 4}, driver="far", uri="qemu+ssh://far/system")
        with pytest.raises(InvalidInputError, match="Invalid IPv6"):
            lite.hosts.create_host("f1", {"vcpu": 4}, uri="sim://[")
        assert lite.hosts.list_hosts() == [] and lite.repair.check().ok
        lite.hosts.create_host("f1", {"vcpu": 4})  # the name is free: nothing half-made was left
    finally:
        DRIVERS.pop("far")
