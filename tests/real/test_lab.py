"""The lab harness itself: hosts are separate libvirt nodes, the guest boots and counts, and
stopping a lab ends exactly the processes it started (daemon and QEMU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from poolvisor.lab import GuestImage, Lab, markers, wait_marker, wait_ticks

pytestmark = pytest.mark.real


def _domain_xml(name: str, image: GuestImage, console: Path) -> str:
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>96</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{image.kernel}</kernel>
<initrd>{image.initrd}</initrd><cmdline>{image.cmdline(name)}</cmdline></os>
<devices><serial type='file'><source path='{console}' append='on'/><target port='0'/></serial>
<memballoon model='none'/></devices></domain>"""


def test_hosts_are_distinct_nodes(lab: Lab) -> None:
    import libvirt

    uuids = set()
    for h in lab:
        conn = libvirt.open(h.uri)
        try:
            caps = conn.getCapabilities()
            assert f"<uuid>{h.host_uuid}</uuid>" in caps
            uuids.add(h.host_uuid)
            assert conn.storagePoolLookupByName("poolvisor").isActive()
        finally:
            conn.close()
    assert len(uuids) == len(lab.hosts)


def test_guest_boots_counts_and_stop_ends_everything(tmp_path: Path, guest_image: GuestImage) -> None:
    import libvirt

    lab = Lab(tmp_path, 1, prefix="solo")
    with lab:
        host = lab.hosts[0]
        console = lab.consoles / "g.log"
        conn = libvirt.open(host.uri)
        try:
            dom = conn.createXML(_domain_xml("solo-guest", guest_image, console), 0)
            wait_marker(console, "solo-guest", timeout_s=60)
            first = wait_ticks(console, after=0)
            assert wait_ticks(console, after=first) > first  # it keeps counting
            qemu_pid = int((host.dir / "run" / "qemu" / "solo-guest.pid").read_text())
            assert dom.isActive()
        finally:
            conn.close()
        pids = host.processes()
        assert host.pid in pids and qemu_pid in pids
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"process {pid} survived lab.stop()"
    assert markers(console) == ["solo-guest"]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
