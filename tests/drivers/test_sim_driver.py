"""The sim driver: lifecycle, fault injection, registry and entry points."""

from __future__ import annotations

import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers import Driver, DriverError, DriverWorkload, make_driver, register_driver
from poolvisor.drivers.registry import DRIVERS
from poolvisor.drivers.sim import SimDriver

WL = DriverWorkload("demo/vm1", "vm", {"vcpu": 2.0, "memory_mib": 1024.0})


def test_lifecycle_and_stats():
    d = SimDriver()
    assert isinstance(d, Driver)
    d.add_host("h1", {"vcpu": 8})
    d.add_host("h2", {"vcpu": 8})
    d.create("h1", WL)
    assert d.exists("h1", WL) and d.stats("h1").used == {"vcpu": 2.0, "memory_mib": 1024.0}
    d.stop("h1", WL)
    st = d.stats("h1")
    assert st.states == {"demo/vm1": "stopped"} and st.used == {} and st.workloads == 1
    d.start("h1", WL)
    d.suspend("h1", WL)
    d.resume("h1", WL)
    assert d.stats("h1").states["demo/vm1"] == "running"
    d.migrate(WL, "h1", "h2")
    assert not d.exists("h1", WL) and d.exists("h2", WL)
    d.delete("h2", WL)
    assert d.stats("h2").workloads == 0
    d.delete("h2", WL)  # idempotent


def test_fail_revive_and_fence():
    d = SimDriver()
    d.create("h1", WL)  # hosts created elsewhere are adopted
    assert d.heartbeat("h1")
    d.fail("h1")
    assert not d.heartbeat("h1") and not d.exists("h1", WL) and d.stats("h1").workloads == 0
    with pytest.raises(DriverError, match="does not respond"):
        d.create("h1", WL)
    d.revive("h1")
    d.create("h1", WL)
    d.fence("h1")
    assert not d.heartbeat("h1") and not d.exists("h1", WL)


def test_injected_faults_and_durations():
    d = SimDriver(durations={"create": 0.0})
    d.inject("create", host="h1", times=2)
    for _ in range(2):
        with pytest.raises(DriverError, match="injected"):
            d.create("h1", WL)
    d.create("h2", WL)
    d.create("h1", WL)  # the two injected faults are used up
    with pytest.raises(ValueError):
        SimDriver(durations={"teleport": 1})
    with pytest.raises(ValueError):
        d.inject("teleport")


def test_registry():
    assert isinstance(make_driver("sim"), SimDriver)
    assert isinstance(make_driver("sim", durations={"start": 0}), SimDriver)
    with pytest.raises(InvalidInputError, match="unknown driver"):
        make_driver("vmware")

    class Custom(SimDriver):
        name = "custom"

    register_driver("custom", Custom)
    try:
        assert make_driver("custom").name == "custom"
    finally:
        DRIVERS.pop("custom")
