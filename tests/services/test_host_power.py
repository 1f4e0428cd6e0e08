"""A creation that finds no room wakes a standby (DPM powered-off) host through its driver
(services/host_power.py): it then succeeds, or waits in the queue and is placed once the host has
booted (the sim driver models the boot time on a simulated clock); every step is an event."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from poolvisor.domain.errors import NoValidHostError
from poolvisor.domain.models import HostState
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services, open_services


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0


@pytest.fixture
def pool(tmp_path) -> Iterator[tuple[Services, Clock, SimDriver]]:
    """p: h0 of 8 vCPUs running vm0 (6 vCPUs); h1 of 16 vCPUs switched off (standby); h2 of 2."""
    s = open_services(f"sqlite:///{tmp_path / 'p.db'}")
    clock = Clock()
    d = s.driver
    assert isinstance(d, SimDriver)
    d.clock, d.boot_s = (lambda: clock.now), 60.0
    s.catalog.create_pool("p")
    s.catalog.create_project("demo")
    for name, vcpu in (("h0", 8), ("h1", 16), ("h2", 2)):
        s.hosts.create_host(name, {"vcpu": vcpu, "memory_mib": 32768}, pool="p")
    for name in ("h1", "h2"):
        d.power_off(name)
        s.hosts.mark_state(name, HostState.STANDBY, "host.state", "powered off by the controller")
    assert s.workloads.create_workload("demo", "vm0", demand={"vcpu": 6, "memory_mib": 1024},
                                       pool="p").host == "h0"
    yield s, clock, d
    s.close()


def _kinds(s: Services) -> list[str]:
    return [e.kind for e in reversed(s.events.list_events(limit=100))]


def test_a_create_with_no_room_wakes_a_standby_host_and_says_so(pool) -> None:
    s, _clock, d = pool
    with pytest.raises(NoValidHostError, match="standby host h1 is powering on"):
        s.workloads.create_workload("demo", "vm1", demand={"vcpu": 6, "memory_mib": 1024}, pool="p")
    assert d.power_state("h1") == "booting" and d.power_state("h2") == "off"  # h2 (2 vCPUs) cannot hold it
    on = [e for e in s.events.list_events(limit=50) if e.kind == "controller.power_on"]
    assert len(on) == 1 and on[0].subject == "host/h1"
    assert on[0].data["workload"] == "demo/vm1" and on[0].data["figures"]["vcpu"] == 6.0
    assert "no room" in on[0].data["rule"]
    # asking again while it boots does not switch on another host
    with pytest.raises(NoValidHostError, match="h1 is already booting"):
        s.workloads.create_workload("demo", "vm1", demand={"vcpu": 6, "memory_mib": 1024}, pool="p")
    assert len([e for e in s.events.list_events(limit=50) if e.kind == "controller.power_on"]) == 1


def test_a_waiting_create_is_placed_once_the_woken_host_has_booted(pool) -> None:
    s, clock, d = pool
    rec, pending = s.queue.create_or_wait("demo", "vm1", demand={"vcpu": 6, "memory_mib": 1024}, pool="p")
    assert rec is None and pending is not None
    assert d.power_state("h1") == "booting"
    clock.now += 30  # half-way through the boot: still waiting
    r = s.queue.drain()
    assert r.placed == [] and r.waiting == 1
    assert s.hosts.get_host("h1").state == "standby"
    clock.now += 31  # booted
    r = s.queue.drain()
    assert r.placed == ["demo/vm1"] and r.waiting == 0
    assert s.hosts.get_host("h1").state == "up"
    assert s.workloads.get_workload("demo", "vm1").host == "h1"
    kinds = _kinds(s)
    order = [k for k in kinds if k in ("workload.queued", "controller.power_on", "host.state",
                                       "workload.dequeued")]
    assert order[-4:] == ["controller.power_on", "workload.queued", "host.state", "workload.dequeued"]


def test_a_host_that_boots_at_once_takes_the_create_directly(pool) -> None:
    s, _clock, d = pool
    d.boot_s = 0.0
    w = s.workloads.create_workload("demo", "vm1", demand={"vcpu": 6, "memory_mib": 1024}, pool="p")
    assert w.host == "h1" and s.hosts.get_host("h1").state == "up"
    assert "controller.power_on" in _kinds(s)


def test_no_standby_host_can_hold_it_nothing_is_woken(pool) -> None:
    s, _clock, d = pool
    with pytest.raises(NoValidHostError) as e:
        s.workloads.create_workload("demo", "huge", demand={"vcpu": 20, "memory_mib": 1024}, pool="p")
    assert "powering on" not in e.value.message and "booting" not in e.value.message
    assert d.power_state("h1") == "off" and "controller.power_on" not in _kinds(s)
