"""Memory pools on the sim driver: overcommit per pool, reservations never overcommitted, balloon
reclaim under pressure (least recently active first, never below reservation or working set) and
give-back when calm, with events; the fragmentation report."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from poolvisor.clock import SimClock
from poolvisor.domain.errors import ConflictError, InvalidInputError, NoValidHostError
from poolvisor.drivers import register_driver
from poolvisor.drivers.protocols import Capability, UnsupportedByDriver
from poolvisor.drivers.registry import DRIVERS
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services
from poolvisor.services.balloon_loop import BalloonLoop
from poolvisor.store.rows import MemoryStateRow


def _host(s: Services) -> None:
    s.catalog.create_pool("p")
    s.hosts.create_host("h", {"vcpu": 32, "memory_mib": 10_000}, pool="p")
    s.catalog.create_flavor("m4", {"vcpu": 1, "memory_mib": 4000})
    s.catalog.create_project("demo")


def test_overcommit_lets_more_memory_be_allocated_and_cannot_go_below_allocated(lite: Services) -> None:
    _host(lite)
    lite.workloads.create_workload("demo", "a", flavor="m4")
    lite.workloads.create_workload("demo", "b", flavor="m4")
    with pytest.raises(NoValidHostError, match="insufficient memory_mib"):
        lite.workloads.create_workload("demo", "c", flavor="m4")
    assert lite.memory.set_overcommit("p", 1.5) == ["h"]
    lite.workloads.create_workload("demo", "c", flavor="m4")  # 12000 of 15000 allocatable
    with pytest.raises(ConflictError, match="12000 MiB allocated"):
        lite.memory.set_overcommit("p", 1.0)
    with pytest.raises(InvalidInputError):
        lite.memory.set_overcommit("p", 0)


def test_reservations_are_never_overcommitted(lite: Services) -> None:
    _host(lite)
    lite.memory.set_overcommit("p", 2.0)
    for n in ("a", "b", "c"):
        lite.workloads.create_workload("demo", n, flavor="m4")
    lite.memory.set_reservation("demo", "a", 4000)
    lite.memory.set_reservation("demo", "b", 4000)
    with pytest.raises(ConflictError, match="never overcommitted"):
        lite.memory.set_reservation("demo", "c", 2001)
    lite.memory.set_reservation("demo", "c", 2000)
    with pytest.raises(ConflictError, match="cannot reserve"):
        lite.memory.set_reservation("demo", "c", 4001)
    assert lite.repair.check().ok, lite.repair.check().violations
    lite.store.run(lambda s: s.execute(update(MemoryStateRow).values(reserved_mib=5000.0)))
    report = " | ".join(lite.repair.check().violations)
    assert "more than its memory" in report and "reserved on 10000 MiB of memory" in report


def test_reclaim_under_pressure_and_give_back(lite: Services) -> None:
    _host(lite)
    lite.memory.set_overcommit("p", 1.5)
    drv = lite.driver
    assert isinstance(drv, SimDriver)
    for i, n in enumerate(("a", "b", "c")):
        lite.workloads.create_workload("demo", n, flavor="m4")
        drv.balloon.set_working_set(f"demo/{n}", 1000, at=100.0 + i)  # a: least recently active
    lite.memory.set_reservation("demo", "a", 3000)
    # 12000 granted on 10000 physical: over 90 %, reclaim down to 80 % = 8000
    [r] = lite.memory.reclaim("p")
    assert r.pressure_before == pytest.approx(1.2) and r.pressure_after == pytest.approx(0.8)
    got = {c.workload: c.after_mib for c in r.changes}
    assert got == {"demo/a": 3000, "demo/b": 1000}  # a to its reservation, then b to its working set
    assert r.reclaimed_mib == 4000
    ev = lite.events.list_events(limit=5)
    assert ev[0].kind == "memory.reclaimed" and ev[0].data["guests"]["demo/b"] == [4000, 1000]
    # b becomes busy again: it gets its working set back first, even under pressure
    drv.balloon.set_working_set("demo/b", 3500, at=200.0)
    [r] = lite.memory.reclaim("p")
    assert {c.workload: c.after_mib for c in r.changes}["demo/b"] == 3500
    rep = lite.memory.report("p")
    assert rep.memory["reserved"] == 3000 and rep.memory["ballooned_away"] > 0
    # pressure drops (c is deleted): memory goes back, most recently active first, up to 80 %
    lite.workloads.delete_workload("demo", "c")
    [r] = lite.memory.reclaim("p")
    assert r.returned_mib == 1500 and r.pressure_after == pytest.approx(0.8)
    assert {c.workload: c.after_mib for c in r.changes} == {"demo/a": 4000, "demo/b": 4000}
    assert lite.events.list_events(limit=1)[0].kind == "memory.returned"
    assert lite.memory.report("p").memory["ballooned_away"] == 0


def test_memory_report_stranded_capacity_and_largest_flavor(lite: Services) -> None:
    lite.catalog.create_pool("p")
    lite.hosts.create_host("h1", {"vcpu": 4, "memory_mib": 8192}, pool="p")
    lite.hosts.create_host("h2", {"vcpu": 4, "memory_mib": 8192}, pool="p")
    lite.catalog.create_flavor("small", {"vcpu": 1, "memory_mib": 2048})
    lite.catalog.create_flavor("big", {"vcpu": 4, "memory_mib": 8192})
    lite.catalog.create_flavor("gpu", {"vcpu": 1, "gpu": 1})
    lite.catalog.create_project("demo")
    # strands 6 GiB
    lite.workloads.create_workload("demo", "x", demand={"vcpu": 4, "memory_mib": 2048}, pool="p")
    rep = lite.memory.report("p")
    assert rep.hosts == 2 and rep.stranded_hosts == 1
    assert rep.stranded["memory_mib"] == 6144.0 and rep.stranded["vcpu"] == 0.0
    assert {f.flavor: f.fits for f in rep.flavors} == {"big": 1, "gpu": 0, "small": 4}
    assert rep.largest_flavor == "big" and rep.memory_overcommit == {"1": 2}


def test_balloon_loop_runs_rounds(lite: Services) -> None:
    _host(lite)
    lite.memory.set_overcommit("p", 1.5)
    drv = lite.driver
    assert isinstance(drv, SimDriver) and BalloonLoop.wanted(lite)
    for n in ("a", "b", "c"):
        lite.workloads.create_workload("demo", n, flavor="m4")
        drv.balloon.set_working_set(f"demo/{n}", 500)
    loop = BalloonLoop(lite, interval=0.01)
    assert loop.round() == 1  # 12000 of 10000: reclaimed
    loop.start()
    deadline = time.monotonic() + 10
    while loop.rounds < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    assert loop.rounds >= 3
    assert lite.memory.report("p").memory["ballooned_away"] > 0


def test_balloon_loop_on_a_sim_clock_runs_every_interval_and_survives_a_failing_round(lite: Services) -> None:
    """The serve loop is a clock-core Loop: on a SimClock the same rounds run in simulated time, one
    per interval from one interval after start; a round that raises is counted, not fatal."""
    _host(lite)
    clock = SimClock()
    loop = BalloonLoop(lite, interval=10.0, clock=clock)
    loop.start()
    clock.run(until=35.0)
    assert loop.rounds == 3 and loop.status().steps == 3 and loop.status().next_at == 40.0
    real = lite.memory.reclaim

    def away(*_a: object, **_k: object) -> list[object]:
        raise ConflictError("driver away")

    lite.memory.reclaim = away  # type: ignore[method-assign,assignment]
    clock.run(until=45.0)
    assert loop.rounds == 3 and loop.status().errors == 1 and "driver away" in str(loop.status().last_error)
    lite.memory.reclaim = real  # type: ignore[method-assign]
    clock.run(until=55.0)
    assert loop.rounds == 4
    loop.stop()
    assert clock.run(until=100.0) == 0 and not loop.status().running


class NoBalloonDriver(SimDriver):
    """A container-like driver (as LXC): the sim's lifecycle, no memory balloon."""

    name = "noballoon"
    capabilities = frozenset(SimDriver.capabilities - {Capability.BALLOON})


def test_reclaim_leaves_out_hosts_that_cannot_balloon(lite: Services) -> None:
    """A pool mixing ballooning hosts with container hosts: the round works on the former and
    leaves the latter alone; a round with only the latter is the driver's 409."""
    register_driver("noballoon", NoBalloonDriver)
    try:
        _host(lite)
        lite.hosts.create_host("ct", {"vcpu": 32, "memory_mib": 10_000}, pool="p", driver="noballoon",
                               labels={"k": "ct"})
        lite.memory.set_overcommit("p", 1.5)
        drv = lite.driver
        assert isinstance(drv, SimDriver)
        lite.workloads.create_workload("demo", "box", flavor="m4", required_labels={"k": "ct"})
        with pytest.raises(UnsupportedByDriver, match="driver 'noballoon' of host ct cannot resize"):
            lite.memory.reclaim("p")
        for n in ("a", "b", "c"):
            lite.workloads.create_workload("demo", n, flavor="m4", forbidden_labels={"k": "ct"})
            drv.balloon.set_working_set(f"demo/{n}", 1000)
        [r] = lite.memory.reclaim("p")
        assert r.host == "h" and r.reclaimed_mib == 4000
    finally:
        DRIVERS.pop("noballoon")
