"""Volumes as disks of libvirt guests, through svc.volumes on a lab host: attach to a running
guest hot-plugs a raw disk holding the volume's bytes (seen in the live domain XML), detach
unplugs it and deletes the file; attach to a stopped guest lands in its definition only. What the
disk holds when it is detached, or when its workload is deleted, comes back into the volume
(downloaded through libvirt)."""

from __future__ import annotations

import pytest
from tests_real_helpers import assert_host_empty, lab_config

from poolvisor.drivers.libvirt_xml import disk_targets
from poolvisor.lab import GuestImage, Lab, wait_marker
from poolvisor.services import open_services

pytestmark = pytest.mark.real


def _download(conn, path: str, offset: int, n: int) -> bytes:
    vol = conn.storageVolLookupByPath(path)
    st = conn.newStream(0)
    vol.download(st, offset, n, 0)
    got = b""
    while len(got) < n:
        chunk = st.recv(n - len(got))
        assert chunk, "short download"
        got += chunk
    st.finish()
    return got


def test_volume_becomes_a_disk_of_the_running_guest(tmp_path, lab: Lab, guest_image: GuestImage) -> None:
    import libvirt

    h = lab.hosts[0]
    cfg = lab_config(lab, guest_image)
    svc = open_services(f"sqlite:///{tmp_path / 'v.db'}", driver="libvirt",
                        driver_options={f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
    conn = libvirt.open(h.uri)
    try:
        svc.hosts.create_host(h.name, driver="libvirt", uri=h.uri)
        svc.workloads.create_workload("vd", "g1", create_project=True,
                                      demand={"vcpu": 1, "memory_mib": 96, "disk_gib": 0.0625})
        wait_marker(lab.consoles / "vd+g1.log", "vd+g1", timeout_s=60)
        svc.volumes.create_pool("sp", replicas=1, segment_mib=4)
        svc.volumes.add_device("sp", "d1", 64, path=str(tmp_path / "dev1"))
        svc.volumes.create_volume("vd", "data", "sp", 8)
        payload = b"poolvisor-volume!" * 300
        svc.volumes.write_data("vd", "data", 5 << 20, payload)  # in the second segment only

        rec = svc.volumes.attach("vd", "data", "g1")
        assert rec.attached_to == "g1"
        dom = conn.lookupByName("vd+g1")
        live = disk_targets(dom.XMLDesc(0))
        assert sorted(live) == ["vda", "vdb"] and live["vdb"].endswith("vd+g1--vd+data.raw")
        assert "vdb" in disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # and after a restart
        path = live["vdb"]
        assert conn.storageVolLookupByPath(path).info()[1] == 8 << 20
        assert _download(conn, path, 5 << 20, len(payload)) == payload  # the volume's bytes
        assert _download(conn, path, 0, 4096) == bytes(4096)  # never written: zeros

        svc.volumes.detach("vd", "data")
        assert sorted(disk_targets(dom.XMLDesc(0))) == ["vda"]  # the guest released it
        assert sorted(disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))) == ["vda"]
        assert all(not v.endswith(".raw") for p in conn.listAllStoragePools() for v in p.listVolumes())
        assert svc.volumes.get_volume("vd", "data").attached_to is None

        # a stopped guest: the disk goes into its definition, plugged when it starts
        svc.workloads.workload_action("vd", "g1", "stop")
        svc.volumes.attach("vd", "data", "g1")
        assert "vdb" in disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        svc.workloads.workload_action("vd", "g1", "start")
        assert "vdb" in disk_targets(dom.XMLDesc(0))
        svc.workloads.delete_workload("vd", "g1")  # its disks go with it
        assert svc.volumes.get_volume("vd", "data").attached_to is None
    finally:
        conn.close()
        svc.close()
    assert_host_empty(h.uri)


def _upload(conn, path: str, offset: int, data: bytes) -> None:
    vol = conn.storageVolLookupByPath(path)
    st = conn.newStream(0)
    vol.upload(st, offset, len(data), 0)
    st.send(data)
    st.finish()


def test_what_the_guest_wrote_comes_back_into_the_volume(tmp_path, lab: Lab, guest_image: GuestImage) -> None:
    """On detach and on workload delete. "The guest's writes" are written into the disk's file
    through libvirt while the guest is stopped (the test guest has no tooling to write a block
    device, and a running TCG guest's hot-unplug is slow on a loaded machine); the copy-back path
    is the one a running guest's disk takes after it released the disk."""
    import libvirt

    h = lab.hosts[0]
    cfg = lab_config(lab, guest_image)
    svc = open_services(f"sqlite:///{tmp_path / 'v.db'}", driver="libvirt",
                        driver_options={f: getattr(cfg, f) for f in cfg.__dataclass_fields__})
    conn = libvirt.open(h.uri)
    try:
        svc.hosts.create_host(h.name, driver="libvirt", uri=h.uri)
        svc.workloads.create_workload("vd", "g2", create_project=True,
                                      demand={"vcpu": 1, "memory_mib": 96, "disk_gib": 0.0625})
        svc.workloads.workload_action("vd", "g2", "stop")
        svc.volumes.create_pool("sp", replicas=1, segment_mib=4)
        svc.volumes.add_device("sp", "d1", 64, path=str(tmp_path / "dev1"))
        svc.volumes.create_volume("vd", "data", "sp", 12)
        payload = b"volume bytes " * 500
        svc.volumes.write_data("vd", "data", 5 << 20, payload)
        dom = conn.lookupByName("vd+g2")

        svc.volumes.attach("vd", "data", "g2")
        path = disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))["vdb"]
        _upload(conn, path, (5 << 20) + 13, b"written by the guest")  # over the volume's bytes
        _upload(conn, path, 9 << 20, b"third segment")  # a segment the volume never placed
        svc.volumes.detach("vd", "data")
        want = bytearray(payload)
        want[13:33] = b"written by the guest"
        assert svc.volumes.read_data("vd", "data", 5 << 20, len(payload)) == want
        assert svc.volumes.read_data("vd", "data", 9 << 20, 13) == b"third segment"
        assert svc.volumes.get_volume("vd", "data").segments == 2  # the zeros of segment 0 took no space
        assert not [v for p in conn.listAllStoragePools() for v in p.listVolumes() if v.startswith("vd+g2--")]

        svc.volumes.attach("vd", "data", "g2")
        path = disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))["vdb"]
        _upload(conn, path, 0, b"last words")
        svc.workloads.delete_workload("vd", "g2")  # the disk's bytes come back before it goes
        assert svc.volumes.read_data("vd", "data", 0, 10) == b"last words"
        assert svc.volumes.read_data("vd", "data", 5 << 20, len(payload)) == want
        assert svc.volumes.get_volume("vd", "data").attached_to is None
    finally:
        conn.close()
        svc.close()
    assert_host_empty(h.uri)
