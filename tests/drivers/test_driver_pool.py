"""DriverPool: instances per (driver, URI), hosts bound to their instance, capabilities per host."""

from __future__ import annotations

import pytest

from poolvisor.drivers import DriverWorkload, register_driver
from poolvisor.drivers.base import HostStats
from poolvisor.drivers.pool import DriverPool
from poolvisor.drivers.protocols import Capability, HostBinding, HostInfo, MigrationState, UnsupportedByDriver
from poolvisor.drivers.registry import DRIVERS
from poolvisor.drivers.sim import SimDriver

WL = DriverWorkload("p/w", "container", {"vcpu": 1.0, "memory_mib": 512.0})


class BoxDriver:
    """A lifecycle-only driver (like a container driver): no migration, no snapshots."""

    name = "box"
    capabilities = frozenset({Capability.LIFECYCLE})

    def __init__(self, uri: str = "") -> None:
        self.uri = uri
        self.guests: dict[str, set[str]] = {}

    def connect(self, host: HostBinding) -> None:
        self.guests.setdefault(host.name, set())

    def disconnect(self, host: str) -> None:
        self.guests.pop(host, None)

    def host_info(self, host: str) -> HostInfo:
        return HostInfo(host, {"vcpu": 2.0})

    def heartbeat(self, host: str) -> bool:
        return host in self.guests

    def stats(self, host: str) -> HostStats:
        return HostStats(host, True, len(self.guests[host]))

    def create(self, host: str, workload: DriverWorkload) -> None:
        self.guests[host].add(workload.key)

    def start(self, host: str, workload: DriverWorkload) -> None: ...
    def stop(self, host: str, workload: DriverWorkload) -> None: ...
    def suspend(self, host: str, workload: DriverWorkload) -> None: ...
    def resume(self, host: str, workload: DriverWorkload) -> None: ...

    def delete(self, host: str, workload: DriverWorkload) -> None:
        self.guests[host].discard(workload.key)

    def exists(self, host: str, workload: DriverWorkload) -> bool:
        return workload.key in self.guests.get(host, set())


@pytest.fixture
def box():
    register_driver("box", BoxDriver)
    yield
    DRIVERS.pop("box")


def test_instances_are_cached_per_driver_and_uri():
    pool = DriverPool({"sim": {"durations": {"create": 0}}})
    a, a2, b = pool.instance("sim", "sim://a"), pool.instance("sim", "sim://a"), pool.instance("sim", "sim://b")
    assert a is a2 and a is not b and pool.default is pool.instance("sim", "")
    assert isinstance(a, SimDriver) and a.uri == "sim://a"


def test_two_sim_uris_in_one_pool_bind_hosts_separately_and_migrate_between_them():
    pool = DriverPool()
    ha, hb = HostBinding("ha", "sim", "sim://a"), HostBinding("hb", "sim", "sim://b")
    da, db = pool.bind(ha), pool.bind(hb)
    assert da is not db and pool.driver_of("ha") is da and pool.driver_of("hb") is db
    pool.lifecycle("ha").create("ha", WL)
    assert pool.lifecycle("ha").exists("ha", WL) and not pool.lifecycle("hb").exists("hb", WL)
    assert isinstance(da, SimDriver) and "hb" not in da.hosts  # each instance serves its own hosts
    p = pool.migration("ha").start_migration(WL, ha, hb).wait(5)
    assert p.state is MigrationState.COMPLETED
    assert pool.lifecycle("hb").exists("hb", WL) and not pool.lifecycle("ha").exists("ha", WL)
    # rebinding a host elsewhere disconnects it from its old instance
    pool.bind(HostBinding("ha", "sim", "sim://b"))
    assert "ha" not in da.hosts and pool.driver_of("ha") is db
    pool.unbind("ha")
    assert "ha" not in db.hosts  # type: ignore[attr-defined]


def test_unknown_hosts_are_resolved_then_default_to_the_sim():
    asked = []

    def resolver(name: str) -> HostBinding | None:
        asked.append(name)
        return HostBinding(name, "sim", "sim://r") if name == "known" else None

    pool = DriverPool(resolver=resolver)
    assert pool.binding("known").uri == "sim://r" and pool.driver_of("known") is pool.instance("sim", "sim://r")
    assert pool.driver_of("stray") is pool.default
    pool.driver_of("known")
    assert asked == ["known", "stray"]  # bound once, then cached


def test_a_mixed_pool_refuses_what_a_hosts_driver_cannot_do(box):
    pool = DriverPool()
    pool.bind(HostBinding("c1", "box", "box:///"))
    pool.bind(HostBinding("v1", "sim"))
    pool.lifecycle("c1").create("c1", WL)
    assert pool.lifecycle("c1").exists("c1", WL)
    with pytest.raises(UnsupportedByDriver) as e:
        pool.migration("c1")
    assert e.value.status_code == 409 and e.value.message == "driver 'box' of host c1 cannot live-migrate"
    with pytest.raises(UnsupportedByDriver, match="cannot take snapshots"):
        pool.snapshots("c1")
    with pytest.raises(UnsupportedByDriver, match="cannot fence hosts"):
        pool.fencing("c1")
    pool.migration("v1")  # the sim host of the same pool can
    pool.fencing("v1")
