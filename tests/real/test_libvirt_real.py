"""The libvirt driver against real QEMU guests on lab hosts: create (marker on the console),
stats, live migration with a handle (the counter continues on the destination), abort, snapshot
and restore, fence, delete; nothing left behind on either host."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from tests_real_helpers import assert_host_empty, lab_config, wait_rollback

from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload
from poolvisor.drivers.conformance import check_conformance
from poolvisor.drivers.libvirt import LibvirtDriver
from poolvisor.drivers.libvirt_xml import domain_name
from poolvisor.drivers.protocols import HostBinding, MigrationState
from poolvisor.lab import ConsoleWatch, GuestImage, Lab, markers, wait_marker, wait_ticks
from poolvisor.lab.console import last_tick, wait_for

pytestmark = pytest.mark.real
_n = itertools.count()


@pytest.fixture
def drv(lab: Lab, guest_image: GuestImage) -> Iterator[LibvirtDriver]:
    d = LibvirtDriver(config=lab_config(lab, guest_image))
    for h in lab:
        d.connect(HostBinding(h.name, "libvirt", h.uri))
    yield d
    for h in lab:  # whatever a failed test left: remove it, then check nothing is left
        for key, _dom in d._managed(h.name):
            d.delete(h.name, DriverWorkload(key, "vm", {}))
    for h in lab:
        assert_host_empty(h.uri)


def vm() -> DriverWorkload:
    return DriverWorkload(f"real/vm-{next(_n)}", "vm", {"vcpu": 1, "memory_mib": 96, "disk_gib": 0.0625})


def test_create_migrate_snapshot_delete(drv: LibvirtDriver, lab: Lab) -> None:
    a, b = (HostBinding(h.name, "libvirt", h.uri) for h in lab.hosts[:2])
    w = vm()
    console = lab.consoles / f"{domain_name(w.key)}.log"
    drv.create(a.name, w)
    wait_marker(console, domain_name(w.key), timeout_s=60)
    wait_ticks(console, after=5)
    info = drv.host_info(a.name)
    assert info.hypervisor == "QEMU" and info.capacity["vcpu"] >= 1 and info.uuid == lab.hosts[0].host_uuid
    sample = drv.workload_stats(a.name)[w.key]
    assert sample.state == "running" and sample.cpu_time_s and sample.cpu_time_s > 0
    assert 0.0 < sample.cpu_util <= 1.0 and sample.memory_mb == 96
    check_balloon(drv, a.name, w, console)

    with ConsoleWatch(console) as watch:
        before = last_tick(console)
        handle = drv.start_migration(w, a, b, live=True)
        seen_running = handle.progress().state
        final = handle.wait(60)
        assert final.state is MigrationState.COMPLETED, final.error
        assert seen_running in (MigrationState.RUNNING, MigrationState.COMPLETED)
        after = wait_ticks(console, after=(before or 0) + 10)
    assert drv.exists(b.name, w) and not drv.exists(a.name, w)
    assert drv.state(b.name, w) == "running"
    assert markers(console) == [domain_name(w.key)]  # no reboot: the same guest goes on counting
    assert after > (before or 0) and watch.lost_ticks() == []
    assert final.downtime_ms is not None and final.downtime_ms < 5000
    assert_no_volume(lab, 0)

    # snapshot the running guest, let it count on, restore: the counter goes back in time
    snap = drv.snapshot_create(b.name, w, "s1")
    at_snap = last_tick(console) or 0
    assert snap.state == "running"
    wait_ticks(console, after=at_snap + 20)
    offset = console.stat().st_size
    drv.snapshot_restore(b.name, w, "s1")
    wait_rollback(console, offset, at_most=at_snap + 5)
    assert drv.state(b.name, w) == "running"
    with pytest.raises(DriverRefusal, match=r"has snapshots \(s1\)"):  # 409, before anything moves
        drv.start_migration(w, b, a)
    with pytest.raises(DriverRefusal, match="delete them first"):
        drv.check_migration(w, b)
    drv.snapshot_delete(b.name, w, "s1")
    assert drv.snapshot_list(b.name, w) == []
    drv.delete(b.name, w)
    assert not drv.exists(b.name, w)


def check_balloon(drv: LibvirtDriver, host: str, w: DriverWorkload, console) -> None:
    """The lab guest's virtio balloon: it reports its memory use, gives memory back down to the
    target (never below what it uses) and takes it again; the guest counts on throughout."""
    wait_for(lambda: drv.guest_memory(host, w).working_set_mib < 96, 10, "the guest's balloon report")
    m = drv.guest_memory(host, w)
    assert m.balloon_mib == 96 and 0 < m.working_set_mib < 96 and m.last_active > 0
    t_resize = time.time()
    got = drv.set_memory(host, w, 1)
    assert m.working_set_mib - 2 <= got < 96  # never below what it uses (+ headroom)
    wait_for(lambda: drv.guest_memory(host, w).balloon_mib < got + 2, 10, f"the balloon at ~{got:g} MiB")
    dom = drv._conn(host).lookupByName(domain_name(w.key))
    wait_for(lambda: dom.memoryStats().get("last_update", 0) > t_resize + 1, 10,
             "a report after the resize")  # it still reports: not squeezed too far
    assert drv.set_memory(host, w, 1) >= got - 2
    t = last_tick(console) or 0
    wait_ticks(console, after=t + 3)  # alive with less memory
    assert drv.set_memory(host, w, 96) == 96
    wait_for(lambda: drv.guest_memory(host, w).balloon_mib == 96, 10, "the balloon back at 96 MiB")


def test_conformance_between_lab_hosts(drv: LibvirtDriver, lab: Lab) -> None:
    """The contract every driver is held to (drivers/conformance.py), migration included."""
    a, b = (HostBinding(h.name, "libvirt", h.uri) for h in lab.hosts[:2])
    w = vm()
    assert check_conformance(drv, a, w, dst=b) == []
    assert not drv.exists(a.name, w) and not drv.exists(b.name, w)


def assert_no_volume(lab: Lab, index: int) -> None:
    import libvirt

    conn = libvirt.open(lab.hosts[index].uri)
    try:
        assert conn.storagePoolLookupByName("poolvisor").listVolumes() == []
    finally:
        conn.close()


def test_abort_keeps_the_guest_on_the_source(drv: LibvirtDriver, lab: Lab) -> None:
    a, b = (HostBinding(h.name, "libvirt", h.uri) for h in lab.hosts[:2])
    w = vm()
    console = lab.consoles / f"{domain_name(w.key)}.log"
    drv.create(a.name, w)
    wait_marker(console, domain_name(w.key), timeout_s=60)
    handle = drv.start_migration(w, a, b, bandwidth_mib_s=1)  # 96 MiB at 1 MiB/s: long enough
    deadline = time.monotonic() + 20
    while handle.progress().bytes_total == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    handle.abort()
    final = handle.wait(30)
    assert final.state is MigrationState.ABORTED, final
    assert drv.exists(a.name, w) and not drv.exists(b.name, w)
    assert drv.state(a.name, w) == "running"
    t = last_tick(console) or 0
    wait_ticks(console, after=t + 3)  # it still runs
    assert_no_volume(lab, 1)  # the destination's pre-created volume is gone again
    drv.delete(a.name, w)


def test_fence_destroys_the_hosts_guests(drv: LibvirtDriver, lab: Lab) -> None:
    a = lab.hosts[0].name
    w1, w2 = vm(), vm()
    drv.create(a, w1)
    drv.create(a, w2)
    drv.fence(a)
    assert drv.stats(a).alive is False
    drv.unfence(a)
    st = drv.stats(a)
    assert st.states == {w1.key: "stopped", w2.key: "stopped"}
    drv.delete(a, w1)
    drv.delete(a, w2)


def test_dead_daemon_fails_heartbeat_and_operations(tmp_path, guest_image: GuestImage) -> None:
    lab = Lab(tmp_path, 1, prefix="dead")
    with lab:
        h = lab.hosts[0]
        d = LibvirtDriver(config=lab_config(lab, guest_image))
        d.connect(HostBinding(h.name, "libvirt", h.uri))
        assert d.heartbeat(h.name)
        h.kill_daemon()
        assert d.heartbeat(h.name) is False
        with pytest.raises(DriverError, match="unreachable"):
            d.create(h.name, vm())
        with pytest.raises(DriverError):
            d.fence(h.name)  # cannot confirm: the host is not safely fenced


def test_lab_fence_command_powers_a_host_off(tmp_path, guest_image: GuestImage) -> None:
    """The lab's fence agent, as a host's `command:` fence method run by the fencing service."""
    import sys

    from poolvisor.services import open_services

    lab = Lab(tmp_path / "lab", 1, prefix="fence")
    with lab:
        h = lab.hosts[0]
        cfg = lab_config(lab, guest_image)
        svc = open_services(f"sqlite:///{tmp_path / 'f.db'}", driver="libvirt",
                            driver_options={f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
        try:
            svc.hosts.create_host(h.name, driver="libvirt", uri=h.uri,
                                  fence=f"command:{sys.executable} -m poolvisor.lab.fence {lab.root}")
            rec = svc.workloads.create_workload("p", "doomed", create_project=True,
                                                demand={"vcpu": 1, "memory_mib": 96, "disk_gib": 0.0625})
            assert rec.host == h.name
            console = lab.consoles / "p+doomed.log"
            wait_marker(console, "p+doomed", timeout_s=60)
            before = h.processes()
            assert len(before) >= 2  # libvirtd and the guest's QEMU
            r = svc.hosts.fence(h.name)
            assert r.ok and "off" in r.reason
            assert h.processes() == []
            t = last_tick(console) or 0
            time.sleep(1.0)
            assert (last_tick(console) or 0) == t  # the guest is gone: its counter stopped
        finally:
            svc.close()


def test_shared_storage_migrates_without_copy_and_keeps_the_disk(tmp_path, guest_image: GuestImage) -> None:
    """Hosts sharing one storage directory (as on NFS): the migration copies no disk, the disk
    stays where it is, and a delete on the old host (e.g. a repair) does not remove it."""
    lab = Lab(tmp_path / "lab", 2, prefix="shr", shared_storage=True)
    with lab:
        d = LibvirtDriver(config=lab_config(lab, guest_image, shared_storage=True))
        a, b = (HostBinding(h.name, "libvirt", h.uri) for h in lab)
        for x in (a, b):
            d.connect(x)
        w = vm()
        console = lab.consoles / f"{domain_name(w.key)}.log"
        d.create(a.name, w)
        wait_marker(console, domain_name(w.key), timeout_s=60)
        disk = tmp_path / "lab" / "shared-images" / f"{domain_name(w.key)}.qcow2"
        assert disk.exists()
        before = wait_ticks(console, after=3)
        h = d.start_migration(w, a, b)
        assert h.copied == []  # nothing to copy
        p = h.wait(120)
        assert p.state is MigrationState.COMPLETED, p.error
        wait_ticks(console, after=before + 5)
        assert disk.exists() and d.exists(b.name, w) and not d.exists(a.name, w)
        d.delete(a.name, w)  # nothing of it on a: must not touch the shared disk
        assert disk.exists() and d.state(b.name, w) == "running"
        d.delete(b.name, w)
        assert not disk.exists()
        assert list((tmp_path / "lab" / "shared-images").iterdir()) == []
