"""The sim driver: every capability protocol, fault injection, the migration model, registry."""

from __future__ import annotations

import time

import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers import DriverError, DriverWorkload, make_driver, register_driver
from poolvisor.drivers.protocols import (
    PROTOCOLS,
    Capability,
    HostBinding,
    HostDriver,
    MigrationHandle,
    MigrationState,
    NicSpec,
    VolumeSpec,
    require,
)
from poolvisor.drivers.registry import DRIVERS
from poolvisor.drivers.sim import SimDriver, SimFabric

WL = DriverWorkload("demo/vm1", "vm", {"vcpu": 2.0, "memory_mib": 1024.0})
H1, H2 = HostBinding("h1", capacity={"vcpu": 8}), HostBinding("h2", capacity={"vcpu": 8})


def test_sim_declares_and_implements_every_capability():
    d = SimDriver()
    assert isinstance(d, HostDriver)
    assert d.capabilities == frozenset(Capability)
    for cap, proto in PROTOCOLS.items():
        require(d, cap)  # declared and implemented
        assert isinstance(d, proto), cap


def test_lifecycle_and_stats():
    d = SimDriver()
    d.connect(H1)
    d.connect(H2)
    d.create("h1", WL)
    assert d.exists("h1", WL) and d.stats("h1").used == {"vcpu": 2.0, "memory_mib": 1024.0}
    d.stop("h1", WL)
    st = d.stats("h1")
    assert st.states == {"demo/vm1": "stopped"} and st.used == {} and st.workloads == 1
    d.start("h1", WL)
    d.suspend("h1", WL)
    d.resume("h1", WL)
    assert d.stats("h1").states["demo/vm1"] == "running"
    p = d.start_migration(WL, H1, H2).wait(5)
    assert p.state is MigrationState.COMPLETED and p.fraction == 1.0 and p.downtime_ms == 0.0
    assert not d.exists("h1", WL) and d.exists("h2", WL)
    d.delete("h2", WL)
    assert d.stats("h2").workloads == 0
    d.delete("h2", WL)  # idempotent


def test_host_info_from_binding_or_uri():
    d = SimDriver(uri="sim://rack1?vcpu=32&memory_mib=131072")
    d.connect(HostBinding("a", "sim", d.uri))
    assert d.host_info("a").capacity == {"vcpu": 32.0, "memory_mib": 131072.0}
    d.connect(HostBinding("b", "sim", d.uri, {"vcpu": 4}))
    assert d.host_info("b").capacity == {"vcpu": 4}
    bare = SimDriver()
    bare.connect(HostBinding("c"))
    assert bare.host_info("c").capacity == {}  # nothing to report: whoever asked must give one
    with pytest.raises(InvalidInputError, match="not a number"):
        SimDriver(uri="sim://?vcpu=many")
    with pytest.raises(InvalidInputError, match="Invalid IPv6"):
        SimDriver(uri="sim://[")


def test_fail_revive_fence_unfence():
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
    with pytest.raises(DriverError, match="does not respond"):
        d.create("h1", WL)  # a fenced host refuses new guests
    d.unfence("h1")
    assert d.heartbeat("h1") and d.stats("h1").workloads == 0  # rejoins empty


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


def test_migration_progress_models_memory_over_bandwidth():
    # 1024 MiB at 2048 MiB/s: half a second, progress visible in between
    d = SimDriver(migration_bandwidth_mibps=2048.0)
    d.create("h1", WL)
    t0 = time.monotonic()
    h: MigrationHandle = d.start_migration(WL, H1, H2)
    p = h.wait(0.2)
    assert p.state is MigrationState.RUNNING and 0.2 < p.fraction < 0.8
    assert p.bytes_total == 1024 << 20 and 0 < p.bytes_done < p.bytes_total
    assert d.exists("h1", WL) and not d.exists("h2", WL)  # still on the source while it runs
    done = h.wait(5)
    assert done.state is MigrationState.COMPLETED and time.monotonic() - t0 >= 0.5
    assert done.downtime_ms == pytest.approx(0.01 * 500, rel=1e-6)  # last 1 % of memory, live
    assert d.exists("h2", WL) and not d.exists("h1", WL)
    h.abort()  # too late: a completed migration stays completed
    assert h.progress().state is MigrationState.COMPLETED


def test_migration_abort_keeps_the_workload_on_its_source():
    d = SimDriver(migration_bandwidth_mibps=1024.0)  # 1 s
    d.create("h1", WL)
    h = d.start_migration(WL, H1, H2)
    assert h.wait(0.1).state is MigrationState.RUNNING
    h.abort()
    p = h.wait(2)
    assert p.state is MigrationState.ABORTED and p.fraction < 0.5
    time.sleep(0.05)
    assert d.exists("h1", WL) and not d.exists("h2", WL)


def test_migration_failures_are_reported_by_the_handle():
    d = SimDriver(migration_bandwidth_mibps=10240.0)
    d.create("h1", WL)
    d.inject("migrate", host="h2")  # the destination fails at switch-over
    p = d.start_migration(WL, H1, H2).wait(5)
    assert p.state is MigrationState.FAILED and "injected" in (p.error or "")
    assert d.exists("h1", WL)
    h = d.start_migration(WL, H1, H2)
    d.fail("h2")  # the destination dies during the transfer
    p = h.wait(5)
    assert p.state is MigrationState.FAILED and "does not respond" in (p.error or "")
    with pytest.raises(DriverError, match="of driver 'libvirt'"):
        d.start_migration(WL, H1, HostBinding("x", "libvirt", "qemu:///system"))


def test_migration_between_two_sim_uris_of_one_fabric():
    fabric = SimFabric()
    a, b = SimDriver(uri="sim://a", fabric=fabric), SimDriver(uri="sim://b", fabric=fabric)
    ha, hb = HostBinding("ha", "sim", "sim://a"), HostBinding("hb", "sim", "sim://b")
    a.connect(ha)
    b.connect(hb)
    a.create("ha", WL)
    a.snapshot_create("ha", WL, "s1")
    assert a.start_migration(WL, ha, hb).wait(5).state is MigrationState.COMPLETED
    assert b.exists("hb", WL) and not a.exists("ha", WL) and "hb" not in a.hosts
    assert [s.name for s in b.snapshot_list("hb", WL)] == ["s1"]  # snapshots follow the workload


def test_snapshots_stats_balloon_and_devices():
    d = SimDriver()
    d.create("h1", WL)
    info = d.snapshot_create("h1", WL, "before")
    assert info.state == "running" and info.size_bytes == 1024 << 20
    with pytest.raises(DriverError, match="already has"):
        d.snapshot_create("h1", WL, "before")
    d.stop("h1", WL)
    d.snapshot_create("h1", WL, "stopped")
    assert [s.name for s in d.snapshot_list("h1", WL)] == ["before", "stopped"]
    d.snapshot_restore("h1", WL, "before")
    assert d.stats("h1").states["demo/vm1"] == "running"
    with pytest.raises(DriverError, match="no snapshot"):
        d.snapshot_restore("h1", WL, "nope")
    d.snapshot_delete("h1", WL, "before")
    d.snapshot_delete("h1", WL, "before")  # idempotent
    assert [s.name for s in d.snapshot_list("h1", WL)] == ["stopped"]

    s = d.workload_stats("h1")["demo/vm1"]
    assert (s.cpu_util, s.memory_used_mb) == (1.0, 1024.0)
    d.set_utilization("h1", WL, 0.25)
    assert d.set_memory("h1", WL, 512) == 1024.0  # never below the working set (all of it, by default)
    d.balloon.set_working_set("demo/vm1", 256)
    assert d.set_memory("h1", WL, 512) == 512.0
    assert d.guest_memory("h1", WL).balloon_mib == 512.0
    s = d.workload_stats("h1")["demo/vm1"]
    assert (s.cpu_util, s.memory_used_mb, s.memory_mb) == (0.25, 512.0, 512.0)
    with pytest.raises(InvalidInputError, match="balloon"):
        d.set_memory("h1", WL, 4096)
    d.stop("h1", WL)
    assert d.workload_stats("h1")["demo/vm1"].cpu_util == 0.0

    d.attach_volume("h1", WL, VolumeSpec("vol-1", "/dev/null"))
    d.attach_nic("h1", WL, NicSpec("02:00:00:00:00:01", "net"))
    assert d.devices("h1", WL) == (["vol-1"], ["02:00:00:00:00:01"])
    d.detach_volume("h1", WL, "vol-1")
    d.detach_nic("h1", WL, "02:00:00:00:00:01")
    assert d.devices("h1", WL) == ([], [])


def test_registry():
    assert isinstance(make_driver("sim"), SimDriver)
    assert make_driver("sim", uri="sim://x", durations={"start": 0}).uri == "sim://x"  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match="unknown driver"):
        make_driver("vmware")

    class Custom(SimDriver):
        name = "custom"

    register_driver("custom", Custom)
    try:
        assert make_driver("custom").name == "custom"
    finally:
        DRIVERS.pop("custom")


def test_the_sim_passes_the_conformance_kit_and_the_kit_catches_faults():
    from poolvisor.drivers.conformance import check_conformance

    fabric = SimFabric()
    a = SimDriver(uri="sim://a?vcpu=8", fabric=fabric, migration_bandwidth_mibps=8192.0)
    b = SimDriver(uri="sim://b?vcpu=8", fabric=fabric)
    ha, hb = HostBinding("ka", "sim", a.uri), HostBinding("kb", "sim", b.uri)
    assert check_conformance(a, ha, WL, dst=hb, dst_driver=b) == []
    assert not a.exists("ka", WL) and not b.exists("kb", WL)  # nothing left behind

    class Forgetful(SimDriver):  # a broken driver: stop does nothing
        def stop(self, host, workload):
            pass

    problems = check_conformance(Forgetful(), HostBinding("f1", capacity={"vcpu": 1}), WL)
    assert problems == ["after stop stats report 'running', expected 'stopped'"]
    broken = SimDriver()
    broken.inject("snapshot")
    problems = check_conformance(broken, HostBinding("f2", capacity={"vcpu": 1}), WL)
    assert problems[0].startswith("snapshot_create: DriverError: sim: injected failure")
    assert "snapshot_list misses the snapshot" in problems
