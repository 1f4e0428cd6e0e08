"""The libvirt driver's XML and state handling, against libvirt's in-process `test:///default`
driver (no daemon; it cannot migrate: the real suite in tests/real does that)."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload
from poolvisor.drivers.conformance import check_conformance
from poolvisor.drivers.libvirt_xml import (
    NS,
    LibvirtConfig,
    dhcp_host_xml,
    dhcp_hosts,
    domain_name,
    domain_xml,
    free_disk_target,
    guest_spec,
    interface_by_mac,
    interfaces,
    mac_address,
    managed_key,
    managed_network,
    network_name,
    network_settings,
    network_xml,
    nic_xml,
    serves_dhcp,
    volume_xml,
    workload_key,
)
from poolvisor.drivers.protocols import (
    PROTOCOLS,
    Balloon,
    Capability,
    HostBinding,
    VolumeAttach,
    VolumeSpec,
    require,
)
from realenv import require_real

TEST_URI = "test:///default"
_n = itertools.count()


def wl(kind: str = "vm", **demand: float) -> DriverWorkload:
    return DriverWorkload(f"p{next(_n)}/vm-{next(_n)}", kind, demand or {"vcpu": 1, "memory_mib": 256})


# ---- XML (no libvirt needed) -----------------------------------------------------------------------
def test_domain_xml_sizes_the_guest_from_the_demand() -> None:
    cfg = LibvirtConfig(kernel="/k", initrd="/i", cmdline="console=ttyS0 id={name} key={key}",
                        console_dir="/consoles")
    xml = domain_xml("proj/web-1", {"vcpu": 1.5, "memory_mib": 300.2, "disk_gib": 2, "net_mbps": 8}, cfg,
                     domain_type="qemu", disk_path="/pool/proj+web-1.qcow2", network="poolvisor")
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "proj+web-1"
    assert root.findtext("vcpu") == "2"
    assert root.findtext("memory") == str(301 * 1024)
    assert root.findtext("os/kernel") == "/k" and root.findtext("os/initrd") == "/i"
    assert root.findtext("os/cmdline") == "console=ttyS0 id=proj+web-1 key=proj/web-1"
    assert root.find("devices/disk/source").get("file") == "/pool/proj+web-1.qcow2"
    nic = root.find("devices/interface")
    assert nic.find("source").get("network") == "poolvisor"
    assert nic.find("mac").get("address") == mac_address("proj/web-1")
    assert nic.find("bandwidth/inbound").get("average") == "1000"  # 8 Mbit/s = 1000 KB/s
    assert root.find("devices/serial/source").get("path") == "/consoles/proj+web-1.log"
    assert managed_key(xml) == "proj/web-1"
    assert root.find(f"metadata/{{{NS}}}workload").get("kind") == "vm"


def test_domain_xml_without_boot_config_boots_the_disk_and_has_no_nic_without_network() -> None:
    root = ET.fromstring(domain_xml("a/b", {}, LibvirtConfig(), domain_type="kvm", disk_path="/d",
                                    network=None))
    assert root.find("os/boot").get("dev") == "hd"
    assert root.find("os/kernel") is None
    assert root.find("devices/interface") is None
    assert root.find("devices/serial").get("type") == "pty"
    assert root.findtext("memory") == str(512 * 1024) and root.findtext("vcpu") == "1"


def test_xml_escapes_what_it_embeds() -> None:
    cfg = LibvirtConfig(kernel="/k", cmdline="a<b & 'c'")
    xml = domain_xml("p/x", {}, cfg, domain_type="qemu", disk_path="/d'\"<>", network=None)
    root = ET.fromstring(xml)  # well-formed
    assert root.findtext("os/cmdline") == "a<b & 'c'"
    assert root.find("devices/disk/source").get("file") == "/d'\"<>"


def test_guest_spec_refuses_gpus_and_defaults_the_disk() -> None:
    with pytest.raises(ValueError, match="GPU"):
        guest_spec({"gpu": 1})
    s = guest_spec({"vcpu": 0.25, "memory_mib": 1})
    assert s.vcpus == 1 and s.memory_kib == 16 * 1024 and s.disk_bytes == 2**30 and s.net_kbytes_s is None


def test_volume_xml_overlays_the_base_image() -> None:
    root = ET.fromstring(volume_xml("p/x", 123, "/base.img", "raw"))
    assert root.findtext("name") == "p+x.qcow2" and root.findtext("capacity") == "123"
    assert root.findtext("backingStore/path") == "/base.img"
    assert root.find("backingStore/format").get("type") == "raw"
    assert ET.fromstring(volume_xml("p/x", 1)).find("backingStore") is None


def test_names_map_one_to_one() -> None:
    for key in ("p/a", "p.q/a-b_c.d", "x/y"):
        assert workload_key(domain_name(key)) == key
    assert domain_name("a-b/c") != domain_name("a/b-c")
    assert mac_address("p/a") == mac_address("p/a") != mac_address("p/b")


def test_config_from_env_parses_and_rejects() -> None:
    cfg = LibvirtConfig.from_env({"POOLVISOR_LIBVIRT_DOMAIN_TYPE": "qemu",
                                  "POOLVISOR_LIBVIRT_STOP_TIMEOUT_S": "0",
                                  "POOLVISOR_LIBVIRT_SHARED_STORAGE": "yes"}, kernel="/k")
    assert (cfg.domain_type, cfg.stop_timeout_s, cfg.shared_storage, cfg.kernel) == ("qemu", 0.0, True, "/k")
    for env, msg in (({"POOLVISOR_LIBVIRT_DOMAIN_TYPE": "xen"}, "domain_type"),
                     ({"POOLVISOR_LIBVIRT_STOP_TIMEOUT_S": "soon"}, "number"),
                     ({"POOLVISOR_LIBVIRT_STOP_TIMEOUT_S": "-1"}, ">= 0"),
                     ({"POOLVISOR_LIBVIRT_SHARED_STORAGE": "maybe"}, "boolean")):
        with pytest.raises(ValueError, match=msg):
            LibvirtConfig.from_env(env)
    with pytest.raises(ValueError, match="unknown"):
        LibvirtConfig.from_env({}, colour="red")


# ---- the driver on test:///default -----------------------------------------------------------------
@pytest.fixture
def driver() -> Iterator[object]:
    try:
        from poolvisor.drivers.libvirt import LibvirtDriver
    except ImportError as e:
        require_real(False, f"libvirt-python missing: {e}")
        raise
    d = LibvirtDriver(config=LibvirtConfig(domain_type="qemu", stop_timeout_s=5))
    d.connect(HostBinding("t1", "libvirt", TEST_URI))
    yield d
    for key, _dom in d._managed("t1"):
        d.delete("t1", DriverWorkload(key, "vm", {}))
    d.disconnect("t1")


def test_declares_what_it_implements(driver) -> None:
    for cap in driver.capabilities:
        require(driver, cap, host="t1")  # a declared capability without its protocol: TypeError
        assert isinstance(driver, PROTOCOLS[cap])
    assert Capability.BALLOON in driver.capabilities and isinstance(driver, Balloon)
    assert Capability.VOLUME_ATTACH in driver.capabilities and isinstance(driver, VolumeAttach)


def test_conformance_on_the_test_driver(driver) -> None:
    """The contract every driver is held to (drivers/conformance.py), minus migration (the test
    driver cannot migrate: the real suite checks it between lab hosts)."""
    w = wl(vcpu=1, memory_mib=128, disk_gib=1)
    assert check_conformance(driver, HostBinding("t1", "libvirt", TEST_URI), w) == []
    assert not driver.exists("t1", w)


def test_lifecycle_states_and_volume(driver) -> None:
    import libvirt

    w = wl(vcpu=2, memory_mib=128, disk_gib=1)
    driver.create("t1", w)
    driver.create("t1", w)  # idempotent: adopted, still one guest
    assert driver.exists("t1", w) and driver.state("t1", w) == "running"
    conn = libvirt.open(TEST_URI)
    vols = conn.storagePoolLookupByName("poolvisor").listVolumes()
    assert f"{domain_name(w.key)}.qcow2" in vols
    st = driver.stats("t1")
    assert st.alive and st.states[w.key] == "running" and st.used["vcpu"] >= 2
    driver.suspend("t1", w)
    assert driver.state("t1", w) == "suspended"
    assert w.key not in {k for k, s in driver.stats("t1").states.items() if s == "running"}
    driver.resume("t1", w)
    assert driver.state("t1", w) == "running"
    driver.stop("t1", w)
    assert driver.state("t1", w) == "stopped"
    driver.stop("t1", w)  # stopping a stopped guest is a no-op
    driver.start("t1", w)
    assert driver.state("t1", w) == "running"
    driver.delete("t1", w)
    assert not driver.exists("t1", w)
    assert f"{domain_name(w.key)}.qcow2" not in conn.storagePoolLookupByName("poolvisor").listVolumes()
    driver.delete("t1", w)  # idempotent
    conn.close()


def test_refusals_are_driver_errors_and_leave_nothing(driver) -> None:
    with pytest.raises(DriverRefusal, match="runs VMs"):  # 409: what is asked, not the host, is wrong
        driver.create("t1", wl(kind="container"))
    g = wl(gpu=1)
    with pytest.raises(DriverRefusal, match="GPU"):
        driver.create("t1", g)
    assert not driver.exists("t1", g)
    with pytest.raises(DriverError, match="no guest"):
        driver.start("t1", wl())
    with pytest.raises(DriverError, match="not connected"):
        driver.create("nowhere", wl())


def test_unreachable_uri_is_a_driver_error() -> None:
    from poolvisor.drivers.libvirt import LibvirtDriver

    d = LibvirtDriver()
    with pytest.raises(DriverError, match="unreachable"):
        d.connect(HostBinding("gone", "libvirt", "qemu+unix:///system?socket=/nonexistent/libvirt-sock"))
    assert d.heartbeat("gone") is False


def test_fence_destroys_only_our_guests_and_refuses_new_ones(driver) -> None:
    import libvirt

    a, b = wl(), wl()
    driver.create("t1", a)
    driver.create("t1", b)
    driver.fence("t1")
    assert driver.heartbeat("t1") is False and not driver.exists("t1", a)
    conn = libvirt.open(TEST_URI)
    assert conn.lookupByName(domain_name(a.key)).isActive() == 0
    assert conn.lookupByName("test").isActive() == 1  # the test driver's own guest: not ours
    conn.close()
    with pytest.raises(DriverError, match="fenced"):
        driver.create("t1", wl())
    driver.unfence("t1")
    assert driver.heartbeat("t1") is True


def test_snapshots_create_list_restore_delete(driver) -> None:
    w = wl()
    driver.create("t1", w)
    s1 = driver.snapshot_create("t1", w, "before")
    assert s1.name == "before" and s1.state == "running" and s1.created_at > 0
    driver.stop("t1", w)
    driver.snapshot_create("t1", w, "stopped")
    assert [s.name for s in driver.snapshot_list("t1", w)] == ["before", "stopped"]
    driver.snapshot_restore("t1", w, "before")
    assert driver.state("t1", w) == "running"
    driver.snapshot_delete("t1", w, "before")
    assert [s.name for s in driver.snapshot_list("t1", w)] == ["stopped"]
    with pytest.raises(DriverError):
        driver.snapshot_restore("t1", w, "before")
    with pytest.raises(DriverError, match="invalid snapshot name"):
        driver.snapshot_create("t1", w, "../x")


def test_host_info_and_stats(driver) -> None:
    info = driver.host_info("t1")
    assert info.capacity["vcpu"] == 16 and info.capacity["memory_mib"] == 3072
    assert info.hypervisor == "TEST" and "disk_gib" in info.capacity
    w = wl(memory_mib=512)
    driver.create("t1", w)
    samples = driver.workload_stats("t1")
    s = samples[w.key]
    assert s.state == "running" and 0.0 <= s.cpu_util <= 1.0
    assert "test" not in samples  # not ours


def test_working_set_from_the_guests_report_else_qemus_rss(driver) -> None:  # driver: libvirt-python
    from poolvisor.drivers.libvirt import _has_balloon_driver, _working_set_mib, guest_headroom_mib

    with_driver = {"actual": 98304, "usable": 40960, "unused": 30720, "rss": 200000}
    assert _has_balloon_driver(with_driver)
    assert _working_set_mib(with_driver, 96.0) == 56.0 + guest_headroom_mib(96.0) == 72.0
    older = {"actual": 98304, "unused": 30720}  # a driver without MemAvailable
    assert _working_set_mib(older, 96.0) == 66.0 + 16.0
    qemu_only = {"actual": 98304, "rss": 51200}  # no balloon driver in the guest
    assert not _has_balloon_driver(qemu_only) and _working_set_mib(qemu_only, 96.0) == 50.0


def test_balloon_reads_the_guest_and_never_goes_below_its_working_set(driver) -> None:
    """The test driver's guests report balloon statistics like a guest with a balloon driver
    (half of `actual` usable), so the working set is half the balloon plus the headroom; the
    report never gets newer (its last_update is fixed), like a guest that has not reported since
    our resize."""
    w = wl(memory_mib=2048)
    driver.create("t1", w)
    from poolvisor.drivers.libvirt import guest_headroom_mib

    ws = 1024.0 + guest_headroom_mib(2048.0)
    m = driver.guest_memory("t1", w)
    assert (m.balloon_mib, m.working_set_mib) == (2048.0, ws) and m.last_active > 0
    got = driver.set_memory("t1", w, 100)
    assert got == pytest.approx(ws, abs=0.01)  # clamped at the working set (KiB granularity)
    m = driver.guest_memory("t1", w)
    assert (m.balloon_mib, m.working_set_mib) == (got, got)  # a report older than the resize
    assert driver.set_memory("t1", w, 100) == got  # ... takes nothing more
    assert driver.set_memory("t1", w, 2048) == 2048.0  # given back, up to its size
    for bad in (-1, 2049):
        with pytest.raises(InvalidInputError, match="balloon target"):
            driver.set_memory("t1", w, bad)
    driver.stop("t1", w)
    assert driver.set_memory("t1", w, 512) == 512.0  # a stopped guest: its next boot's size
    with pytest.raises(DriverError, match="no guest"):
        driver.guest_memory("t1", wl())


def test_migration_within_one_node_is_refused(driver) -> None:
    w = wl()
    driver.create("t1", w)
    driver.connect(HostBinding("t2", "libvirt", TEST_URI))
    with pytest.raises(DriverRefusal, match="same libvirt node"):
        driver.start_migration(w, HostBinding("t1", "libvirt", TEST_URI),
                               HostBinding("t2", "libvirt", TEST_URI))


def test_nic_on_the_hosts_network_when_it_has_one(driver) -> None:
    import libvirt

    w1 = wl()
    driver.create("t1", w1)  # no network named 'poolvisor' yet: no NIC
    conn = libvirt.open(TEST_URI)
    assert ET.fromstring(conn.lookupByName(domain_name(w1.key)).XMLDesc(0)).find("devices/interface") is None
    net = conn.networkDefineXML("<network><name>poolvisor</name><bridge name='pvtest0'/></network>")
    net.create()
    try:
        w2 = wl()
        driver.create("t1", w2)
        nic = ET.fromstring(conn.lookupByName(domain_name(w2.key)).XMLDesc(0)).find("devices/interface")
        assert nic is not None and nic.find("source").get("network") == "poolvisor"
        assert nic.find("mac").get("address") == mac_address(w2.key)
    finally:
        net.destroy()
        net.undefine()
        conn.close()


# ---- volumes as disks ------------------------------------------------------------------------------
def test_free_disk_target_skips_targets_of_either_definition() -> None:
    def dom(*devs: str) -> str:
        disks = "".join(f"<disk><target dev='{d}'/></disk>" for d in devs)
        return f"<domain><devices>{disks}</devices></domain>"

    assert free_disk_target([dom("vda", "vdb"), dom("vda", "vdc")]) == "vdd"  # live and persistent
    assert free_disk_target([dom("vda")], "sd") == "sda"
    with pytest.raises(ValueError, match="no free disk target"):
        free_disk_target([dom(*(f"vd{c}" for c in "abcdefghijklmnopqrstuvwxyz"))])


def test_volume_attach_that_fails_leaves_no_file(driver) -> None:
    w = wl(disk_gib=0.01)
    driver.create("t1", w)
    driver.stop("t1", w)
    # the test driver can neither upload bytes nor attach devices (the real suite does both)
    with pytest.raises(DriverError, match="write volume"):
        driver.attach_volume("t1", w, VolumeSpec("p/d", size_gib=0.001, content=lambda: iter([(0, b"x")])))
    with pytest.raises(DriverError, match="attach volume"):
        driver.attach_volume("t1", w, VolumeSpec("p/d", size_gib=0.001))
    conn = driver._conn("t1")
    assert not any("--p+d.raw" in v for p in conn.listAllStoragePools() for v in p.listVolumes())
    assert sorted(driver.volume_disks("t1", w)) == ["vda"]
    driver.delete("t1", w)


def test_volume_attach_to_a_missing_guest_is_a_driver_error(driver) -> None:
    with pytest.raises(DriverError, match="no guest"):
        driver.attach_volume("t1", wl(), VolumeSpec("p/x", size_gib=0.001))


# ---- networks ----------------------------------------------------------------------------------------
def test_network_and_nic_xml_round_trip() -> None:
    net = network_xml(network_name("proj/front"), "proj/front")
    root = ET.fromstring(net)
    assert root.findtext("name") == "pv-proj+front" and root.find("ip") is None  # no host address: no clash
    assert managed_network(net) == "proj/front"
    assert managed_network("<network><name>default</name></network>") is None  # not ours
    nic = nic_xml("proj/front", "52:54:00:0A:00:01")
    other = "<interface type='bridge'><source bridge='br0'/></interface>"
    dom = f"<domain><devices>{nic}{other}</devices></domain>"
    assert interfaces(dom) == {"52:54:00:0a:00:01": "pv-proj+front"}
    assert interface_by_mac(dom, "52:54:00:0a:00:01") is not None
    assert interface_by_mac(dom, "52:54:00:0a:00:02") is None


def test_network_xml_with_dhcp_serves_static_entries_only() -> None:
    net = network_xml("pv-p+lan", "p/lan", "10.0.0.254/24", "10.0.0.1")
    root = ET.fromstring(net)
    ip = root.find("ip")
    assert ip is not None and (ip.get("address"), ip.get("prefix")) == ("10.0.0.254", "24")
    assert ip.find("dhcp/range") is None  # no dynamic range: only the NICs poolvisor knows
    assert root.find("dns").get("enable") == "no" and serves_dhcp(net)
    opts = [o.get("value") for o in root.iter("{http://libvirt.org/schemas/network/dnsmasq/1.0}option")]
    assert opts == ["dhcp-option=3,10.0.0.1"]  # the router is the network's gateway, not the host
    assert network_settings(net) == ("p/lan", "10.0.0.254/24", "10.0.0.1")
    bare = network_xml("pv-p+lan", "p/lan", "10.0.0.254/24", "")
    assert [o.get("value") for o in ET.fromstring(bare).iter(
        "{http://libvirt.org/schemas/network/dnsmasq/1.0}option")] == ["dhcp-option=3"]  # no router
    assert not serves_dhcp(network_xml("pv-p+lan", "p/lan"))
    assert network_settings(network_xml("pv-p+lan", "p/lan")) == ("p/lan", "", "")
    host = dhcp_host_xml("02:00:00:00:00:0A", "10.0.0.2")
    with_host = net.replace("<dhcp/>", f"<dhcp>{host}</dhcp>")
    assert dhcp_hosts(with_host) == {"02:00:00:00:00:0a": "10.0.0.2"}
    assert ET.fromstring(host).find("lease").get("expiry") == "0"  # infinite: no renewals needed


def test_dhcp_entries_follow_the_nics(driver) -> None:
    """The network's static DHCP entries: added once per NIC, a stale
    entry holding the same address replaced, and an entry whose MAC no guest of the host has
    removed by the network collection, which removes the network once no guest uses it. (The test
    driver cannot hot-plug NICs: guests are defined with theirs; tests/real plugs real ones.)"""
    import libvirt

    conn = libvirt.open(TEST_URI)
    try:
        net = driver._ensure_network(conn, "p/dh", "10.9.0.254/24", "10.9.0.1")

        def entries() -> dict[str, str]:  # the live entries (the test driver has no separate config)
            return dhcp_hosts(net.XMLDesc(0))

        driver._dhcp_add(net, "02:00:00:00:01:01", "10.9.0.2")
        driver._dhcp_add(net, "02:00:00:00:01:01", "10.9.0.2")  # idempotent
        driver._dhcp_add(net, "02:00:00:00:01:02", "10.9.0.3")
        assert entries() == {"02:00:00:00:01:01": "10.9.0.2", "02:00:00:00:01:02": "10.9.0.3"}
        driver._dhcp_add(net, "02:00:00:00:01:03", "10.9.0.2")  # .2 went to a new NIC: the old entry goes
        assert entries() == {"02:00:00:00:01:02": "10.9.0.3", "02:00:00:00:01:03": "10.9.0.2"}
        dom = conn.defineXML(
            "<domain type='test'><name>p+guest</name><memory>65536</memory><os><type>hvm</type></os>"
            "<devices><interface type='network'><source network='pv-p+dh'/>"
            "<mac address='02:00:00:00:01:02'/></interface></devices></domain>")
        driver._gc_networks(conn, {"pv-p+dh"})  # only 01:02 is still on a guest of the host
        assert entries() == {"02:00:00:00:01:02": "10.9.0.3"}
        dom.undefine()
        driver._gc_networks(conn, {"pv-p+dh"})
        assert "pv-p+dh" not in [n.name() for n in conn.listAllNetworks(0)]
        plain = driver._ensure_network(conn, "p/plain")  # no DHCP: entries are not kept
        driver._dhcp_add(plain, "02:00:00:00:01:04", "10.8.0.2")
        assert dhcp_hosts(plain.XMLDesc(0)) == {} and not serves_dhcp(plain.XMLDesc(0))
        driver._gc_networks(conn, {"pv-p+plain"})
    finally:
        conn.close()
