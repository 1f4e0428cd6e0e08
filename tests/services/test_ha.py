"""HA (services/ha.py): heartbeats -> suspect -> fence -> restart by priority, on a SimClock."""

from __future__ import annotations

import pytest

from poolvisor.clock import SimClock
from poolvisor.domain.errors import InvalidInputError, NotFoundError
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services
from poolvisor.services.ha import AdmissionRefused, HaLoop, HaSettings


def _pool(s: Services, hosts: int = 3, vcpu: float = 4) -> SimDriver:
    s.catalog.create_pool("p")
    for i in range(hosts):
        s.hosts.create_host(f"h{i}", {"vcpu": vcpu, "memory_mib": 4096 * vcpu}, pool="p")
    s.catalog.create_project("demo")
    d = s.driver
    assert isinstance(d, SimDriver)
    return d


def _host_of(s: Services, name: str) -> str | None:
    return s.workloads.get_workload("demo", name).host


def _copies(d: SimDriver, key: str) -> int:
    return sum(1 for h in d.hosts.values() if key in h.guests)


def _kinds(s: Services) -> list[str]:
    return [e.kind for e in s.events.list_events(limit=1000)]


def test_dead_host_is_fenced_and_its_workloads_restart_by_priority(lite):
    d = _pool(lite, hosts=1, vcpu=4)  # h0 takes both, then h1 has room for one of them only
    lite.workloads.create_workload("demo", "lo", demand={"vcpu": 2, "memory_mib": 1024}, priority=1)
    lite.workloads.create_workload("demo", "hi", demand={"vcpu": 2, "memory_mib": 1024}, priority=10)
    victim = "h0"
    lite.hosts.create_host("h1", {"vcpu": 2, "memory_mib": 8192}, pool="p")
    clock = SimClock()
    loop = HaLoop(lite.ha, clock=clock)
    loop.start()
    clock.run(until=2.5)
    assert all(h["status"] == "ok" for h in lite.ha.status()["hosts"])
    d.fail(victim)  # dies between ticks: at t=2.5
    clock.run(until=3.5)
    assert lite.hosts.get_host(victim).state == "up"  # one miss: suspect only
    assert "host.suspect" in _kinds(lite)
    clock.run(until=6.0)
    assert lite.hosts.get_host(victim).state == "fenced"
    f = lite.ha.failures[0]
    assert f.host == victim and f.declared_at - 2.5 <= 5.0  # declared failed within 5 s of the death
    hi = lite.workloads.get_workload("demo", "hi")
    assert hi.state == "running" and hi.host != victim and hi.host is not None
    assert _copies(d, "demo/hi") == 1
    lo = lite.workloads.get_workload("demo", "lo")
    assert lo.state == "lost" and lo.explanation["ha"]["pending"]  # lower priority: waits
    assert f.restored_at is None
    lite.hosts.create_host("h2", {"vcpu": 2, "memory_mib": 8192}, pool="p")  # capacity returns
    clock.run(until=7.0)
    assert _host_of(lite, "lo") == "h2"
    assert f.restored_at is not None and f.restored_at - 2.5 <= 10.0
    assert "workload.restarted" in _kinds(lite)
    assert lite.repair.check().ok


def test_unplaceable_workload_waits_with_reason_and_restarts_when_capacity_returns(lite):
    d = _pool(lite, hosts=2, vcpu=4)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 3, "memory_mib": 1024})
    ha = lite.workloads.get_workload("demo", "a").host
    other = "h1" if ha == "h0" else "h0"
    lite.workloads.create_workload("demo", "b", demand={"vcpu": 3, "memory_mib": 1024})
    assert _host_of(lite, "b") == other
    lite.ha.settings = HaSettings(fail_after=1)
    d.fail(ha)
    lite.ha.step(1.0)
    a = lite.workloads.get_workload("demo", "a")
    assert a.state == "lost" and a.host is None
    assert a.explanation["ha"]["pending"] is True
    assert "no host can take it" in a.explanation["rule"]
    assert lite.ha.status()["pending"][0]["workload"] == "demo/a"
    n_pending = _kinds(lite).count("ha.restart_pending")
    lite.ha.step(2.0)  # the same reason: no new event
    assert _kinds(lite).count("ha.restart_pending") == n_pending == 1
    lite.workloads.delete_workload("demo", "b")  # capacity returns
    lite.ha.step(3.0)
    a = lite.workloads.get_workload("demo", "a")
    assert a.state == "running" and a.host == other
    assert lite.ha.failures[0].restored_at == 3.0


def test_fence_failure_keeps_workloads_and_says_why(lite):
    d = _pool(lite, hosts=2)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 1, "memory_mib": 1024})
    h = _host_of(lite, "a")
    assert h is not None
    lite.ha.settings = HaSettings(fail_after=2)
    d.partition(h)  # alive, guests running, unreachable
    d.inject("fence", h, times=2)
    for t in (1.0, 2.0, 3.0):
        rep = lite.ha.step(t)
    assert rep.fence_failed == [h]
    a = lite.workloads.get_workload("demo", "a")
    assert a.state == "running" and a.host == h  # never restarted while it may still run
    assert _copies(d, "demo/a") == 1
    ev = [e for e in lite.events.list_events(limit=100) if e.kind == "ha.fence_failed"]
    assert len(ev) == 1 and "injected failure of fence" in ev[0].message  # one event per reason
    lite.ha.step(4.0)  # the injected faults are used up: fenced, then restarted elsewhere
    a = lite.workloads.get_workload("demo", "a")
    assert lite.hosts.get_host(h).state == "fenced"
    assert a.state == "running" and a.host != h
    assert _copies(d, "demo/a") == 1  # the partitioned copy was switched off by the fence


def test_fenced_host_rejoins_empty_when_it_comes_back(lite):
    d = _pool(lite, hosts=2)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 1, "memory_mib": 1024})
    h = _host_of(lite, "a")
    assert h is not None
    lite.ha.settings = HaSettings(fail_after=1)
    d.fail(h)
    lite.ha.step(1.0)
    assert lite.hosts.get_host(h).state == "fenced"
    lite.ha.step(2.0)  # seen off
    d.revive(h)
    rep = lite.ha.step(3.0)
    assert rep.rejoined == [h]
    host = lite.hosts.get_host(h)
    assert host.state == "up" and host.workloads == 0 and not d.hosts[h].guests
    assert "host.rejoined" in _kinds(lite)


def test_fenced_host_that_comes_back_with_its_old_guests_rejoins_only_once_they_are_deleted(lite):
    """An out-of-band agent (here `command:true`) cuts the power but leaves the host's defined
    guests on disk (a real libvirt host keeps its domains and volumes): when the host answers
    again, those stale copies are deleted before it rejoins, so the workload runs once."""
    lite.catalog.create_pool("p")
    for i in range(2):
        lite.hosts.create_host(f"h{i}", {"vcpu": 4, "memory_mib": 4096}, pool="p", fence="command:true")
    d = lite.driver
    assert isinstance(d, SimDriver)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 1, "memory_mib": 1024}, create_project=True)
    h = _host_of(lite, "a")
    assert h is not None
    lite.ha.settings = HaSettings(fail_after=1)
    d.partition(h)  # no heartbeat; its guest stays (the power switch does not touch the disk)
    lite.ha.step(1.0)
    assert lite.hosts.get_host(h).state == "fenced"
    assert _host_of(lite, "a") not in (None, h) and _copies(d, "demo/a") == 2  # restarted; stale copy on h
    d.partition(h, cut=False)
    rep = lite.ha.step(2.0)
    assert rep.rejoined == [h]
    assert _copies(d, "demo/a") == 1 and not d.hosts[h].guests
    assert "ha.leftovers_removed" in _kinds(lite)


def test_heartbeat_back_before_the_limit_clears_suspicion(lite):
    d = _pool(lite, hosts=2)
    d.partition("h0")
    lite.ha.step(1.0)
    assert lite.ha.status()["hosts"][0]["status"] == "suspect"
    d.partition("h0", cut=False)
    lite.ha.step(2.0)
    assert lite.ha.status()["hosts"][0]["status"] == "ok"
    assert lite.hosts.get_host("h0").state == "up"
    assert "ha.host_recovered" in _kinds(lite)


def test_restart_respects_anti_affinity(lite):
    d = _pool(lite, hosts=3)
    for n in ("a", "b"):
        lite.workloads.create_workload("demo", n, demand={"vcpu": 1, "memory_mib": 1024}, group="g",
                                       group_policy="anti-affinity")
    ha, hb = _host_of(lite, "a"), _host_of(lite, "b")
    assert ha != hb and ha is not None
    third = ({"h0", "h1", "h2"} - {ha, hb}).pop()
    lite.hosts.set_host_state(third, "maintenance")  # the only host anti-affinity allows is unavailable
    lite.ha.settings = HaSettings(fail_after=1)
    d.fail(ha)
    lite.ha.step(1.0)
    a = lite.workloads.get_workload("demo", "a")
    assert a.state == "lost"  # never next to b
    assert "anti" in a.explanation["rule"].lower() or "group" in a.explanation["rule"].lower()
    lite.hosts.set_host_state(third, "up")
    lite.ha.step(2.0)
    assert _host_of(lite, "a") == third


def test_not_leader_does_nothing(lite):
    d = _pool(lite, hosts=2)
    lite.ha.is_leader = lambda: False
    lite.ha.settings = HaSettings(fail_after=1)
    d.fail("h0")
    assert lite.ha.step(1.0).skipped
    assert lite.hosts.get_host("h0").state == "up"


def test_repair_returns_an_interrupted_restart_to_lost(lite):
    from datetime import timedelta

    from poolvisor.services.leases import utcnow

    d = _pool(lite, hosts=2)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 1, "memory_mib": 1024})
    h = _host_of(lite, "a")
    assert h is not None
    other = "h1" if h == "h0" else "h0"
    lite.ha.settings = HaSettings(fail_after=1)
    d.inject("create", other)  # the restart's create fails: back to lost with the reason
    d.fail(h)
    lite.ha.step(1.0)
    a = lite.workloads.get_workload("demo", "a")
    assert a.state == "lost" and "injected failure of create" in a.explanation["rule"]
    # a restart interrupted between its claim and the driver (the process died): repair -> lost
    from poolvisor.store.rows import WorkloadRow

    def claim_only(s):
        w = s.query(WorkloadRow).filter_by(name="a").one()
        w.state = "placing"
        w.explanation = {"rule": "ha restart", "ha": {"restart": True}}
        lite.leases.stamp(w)

    lite.ctx.write(claim_only)
    done = lite.repair.run(now=utcnow() + timedelta(seconds=60))
    assert any("HA restarts it again" in m for m in done)
    assert lite.workloads.get_workload("demo", "a").state == "lost"
    lite.ha.step(2.0)
    assert lite.workloads.get_workload("demo", "a").state == "running"
    assert lite.repair.check().ok


def test_delete_in_flight_when_host_is_fenced_is_not_resurrected(lite):
    _pool(lite, hosts=2)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 1, "memory_mib": 1024})
    h = _host_of(lite, "a")
    assert h is not None
    from poolvisor.store.rows import WorkloadRow

    lite.ctx.write(lambda s: setattr(s.query(WorkloadRow).filter_by(name="a").one(), "state", "deleting"))
    lite.hosts.set_host_state(h, "fenced")
    with pytest.raises(NotFoundError):
        lite.workloads.get_workload("demo", "a")
    assert lite.repair.check().ok


def test_admission_tolerate_one_failure(lite):
    _pool(lite, hosts=3, vcpu=4)  # 12 vcpu; one host may fail: 8 may be allocated
    lite.ha.set_admission(1, {})
    for i in range(4):
        lite.workloads.create_workload("demo", f"w{i}", demand={"vcpu": 2, "memory_mib": 1024})
    with pytest.raises(AdmissionRefused) as e:
        lite.workloads.create_workload("demo", "w4", demand={"vcpu": 1, "memory_mib": 1024})
    assert e.value.status_code == 409
    assert e.value.detail["resource"] == "vcpu" and e.value.detail["headroom"] == 0.0
    assert "tolerate 1 host failure" in e.value.message
    # a pool policy replaces the global one
    lite.ha.set_admission(0, {"vcpu": 10.0}, pool="p")
    lite.workloads.create_workload("demo", "w4", demand={"vcpu": 2, "memory_mib": 1024}, pool="p")
    with pytest.raises(AdmissionRefused, match="reserve 10 % of vcpu"):
        lite.workloads.create_workload("demo", "w5", demand={"vcpu": 1, "memory_mib": 1024}, pool="p")
    st = lite.ha.status()
    assert st["admission"]["pools"]["p"]["headroom"]["vcpu"]["headroom"] == pytest.approx(0.8)


def test_admission_settings_are_validated(lite):
    _pool(lite, hosts=1)
    with pytest.raises(InvalidInputError):
        lite.ha.set_admission(-1, {})
    with pytest.raises(InvalidInputError):
        lite.ha.set_admission(0, {"vcpu": 100})
    with pytest.raises(NotFoundError):
        lite.ha.set_admission(1, {}, pool="nope")
    with pytest.raises(NotFoundError):
        lite.ha.clear_pool_admission("p")


def test_host_that_restarted_between_heartbeats_has_its_workloads_restarted(lite):
    d = _pool(lite, hosts=2)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 1, "memory_mib": 1024})
    lite.workloads.workload_action("demo", "a", "stop")
    h = _host_of(lite, "a")
    assert h is not None
    d.fail(h)
    d.revive(h)  # back before any heartbeat was missed, without its guests
    lite.ha.step(1.0)
    a = lite.workloads.get_workload("demo", "a")
    assert a.state == "stopped" and _copies(d, "demo/a") == 1  # back as it was
    assert d.hosts[a.host or ""].guests["demo/a"].state == "stopped"
    assert any("no longer on host" in e.message for e in lite.events.list_events(limit=100))
    # a workload its host still runs is left alone
    before = lite.events.list_events(limit=1)[0].id
    lite.ha.step(2.0)
    assert lite.events.list_events(limit=1)[0].id == before
    assert lite.repair.check().ok


def test_fenced_host_stopped_workload_comes_back_stopped(lite):
    d = _pool(lite, hosts=2)
    lite.workloads.create_workload("demo", "a", demand={"vcpu": 1, "memory_mib": 1024})
    lite.workloads.workload_action("demo", "a", "suspend")
    h = _host_of(lite, "a")
    assert h is not None
    lite.ha.settings = HaSettings(fail_after=1)
    d.fail(h)
    lite.ha.step(1.0)
    a = lite.workloads.get_workload("demo", "a")
    assert a.state == "suspended" and a.host != h
    assert d.hosts[a.host or ""].guests["demo/a"].state == "suspended"
    assert any("(suspended, as it was)" in e.message for e in lite.events.list_events(limit=100))


def test_a_restarted_control_plane_does_not_restart_its_workloads(tmp_path):
    """The sim hosts keep running while poolvisor restarts (a new process rebuilds them from the
    database): HA must not take their guests for lost; a host that really restarts still counts."""
    from poolvisor.services import open_services

    db = f"sqlite:///{tmp_path / 'ha.db'}"
    first = open_services(db)
    _pool(first, hosts=2)
    for n in ("a", "b"):
        first.workloads.create_workload("demo", n, demand={"vcpu": 1, "memory_mib": 1024})
    first.workloads.delete_workload("demo", "b")
    first.close()
    again = open_services(db)  # a new process: new sim driver, no guests in memory
    try:
        for t in (1.0, 2.0, 3.0, 4.0):
            again.ha.step(t)
        assert again.workloads.get_workload("demo", "a").state == "running"
        assert "workload.lost" not in _kinds(again)
        d = again.driver
        assert isinstance(d, SimDriver)
        h = _host_of(again, "a") or ""
        d.fail(h)
        d.revive(h)  # the host itself restarted: its guest is gone, HA restarts it
        again.ha.step(5.0)
        assert "workload.lost" in _kinds(again)
        assert again.repair.check().ok
    finally:
        again.close()


def test_a_restarted_workload_gets_its_nics_and_volume_disks_on_the_new_host(lite, tmp_path):
    """HA re-plugs what a create and an attach plugged: the NICs on the new host's networks and the
    attached volumes as disks seeded from the volume's bytes (services/ha.py `_replug`)."""
    from poolvisor.drivers.base import DriverWorkload

    d = _pool(lite, hosts=2, vcpu=4)
    lite.networks.create_network("demo", "front", "10.9.0.0/24")
    lite.workloads.create_workload("demo", "db", demand={"vcpu": 2, "memory_mib": 1024}, networks=["front"])
    lite.volumes.create_pool("sp", replicas=1, segment_mib=4)
    lite.volumes.add_device("sp", "d1", 64, path=str(tmp_path / "d1"))
    lite.volumes.create_volume("demo", "data", "sp", 8)
    lite.volumes.write_data("demo", "data", 5 << 20, b"kept")
    lite.volumes.attach("demo", "data", "db")
    victim = _host_of(lite, "db")
    dw = DriverWorkload("demo/db", "vm", {})
    macs = [n.mac for n in lite.networks.list_nics("demo", workload="db")]
    assert d.devices(victim, dw) == (["demo/data"], macs)
    clock = SimClock()
    HaLoop(lite.ha, clock=clock).start()
    clock.run(until=2.5)
    d.fail(victim)
    clock.run(until=8.0)
    w = lite.workloads.get_workload("demo", "db")
    assert w.state == "running" and w.host not in (None, victim)
    assert d.devices(w.host, dw) == (["demo/data"], macs)  # re-plugged on the new host
    spec = d.hosts[w.host].guests["demo/db"].volumes["demo/data"]
    assert spec.content is not None
    assert [(off, b[1 << 20:(1 << 20) + 4]) for off, b in spec.content()] == [(4 << 20, b"kept")]
    assert lite.volumes.get_volume("demo", "data").attached_to == "db"
    assert lite.repair.check().ok
