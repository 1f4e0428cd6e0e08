"""HA with real guests: a VM created through the API on lab host A, A's libvirtd and QEMU killed
(by PID, only what the lab started), the server's HA loop (0.2 s) notices, fences A through the
lab's fence agent and restarts the VM on lab host B: its boot marker on the serial console again,
one running copy, with its NIC and its attached volume's disk plugged on B (the disk seeded from
the volume's replicas). Then A comes back, rejoins empty, and the VM is deleted: nothing left anywhere.

Its own two-host lab (not the session's): killing a host would break the other tests' lab.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests_real_helpers import TICK_MS, assert_host_empty

from poolvisor.api.app import create_app
from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.libvirt_xml import disk_targets, domain_name, interface_by_mac
from poolvisor.lab import GuestImage, Lab, markers, wait_marker
from poolvisor.lab.console import wait_for
from poolvisor.services import Services, open_services
from poolvisor.services.balloon_loop import BalloonLoop

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.real
PROJECT = "ha"
HA_INTERVAL_S = 0.2
GOAL_S = 30.0


@pytest.fixture
def ha_lab(tmp_path: Path, guest_image: GuestImage) -> Iterator[Lab]:
    with Lab(tmp_path / "lab", 2, prefix="ha") as lab:
        yield lab


@pytest.fixture
def api(tmp_path: Path, ha_lab: Lab, guest_image: GuestImage,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str], Services]]:
    env = {"DOMAIN_TYPE": "qemu", "KERNEL": str(guest_image.kernel), "INITRD": str(guest_image.initrd),
           "CMDLINE": guest_image.cmdline("{name}", TICK_MS), "CONSOLE_DIR": str(ha_lab.consoles),
           "STOP_TIMEOUT_S": "0"}
    for k, v in env.items():
        monkeypatch.setenv(f"POOLVISOR_LIBVIRT_{k}", v)
    monkeypatch.setattr(BalloonLoop, "wanted", staticmethod(lambda _services: False))
    svc = open_services(f"sqlite:///{tmp_path / 'ha.db'}")
    token = svc.auth.bootstrap_admin_token()
    assert token is not None
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(svc, ha_interval=HA_INTERVAL_S), raise_server_exceptions=False) as c:
        assert c.post("/v1/projects", json={"name": PROJECT}, headers=headers).status_code == 201
        yield c, headers, svc
    svc.close()


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def _state(c: TestClient, h: dict[str, str], host: str) -> str:
    return str(_ok(c.get(f"/v1/hosts/{host}", headers=h))["state"])


def test_killed_host_is_fenced_and_its_vm_restarts_elsewhere(
        api: tuple[TestClient, dict[str, str], Services], ha_lab: Lab) -> None:
    import libvirt

    c, h, svc = api
    fence = f"command:{sys.executable} -m poolvisor.lab.fence {ha_lab.root}"  # the lab's power switch
    for host in ha_lab:
        _ok(c.post("/v1/hosts", json={"name": host.name, "driver": "libvirt", "uri": host.uri,
                                       "fence": fence}, headers=h), 201)
    _ok(c.post("/v1/networks", json={"name": "front", "cidr": "10.77.0.0/24", "project": PROJECT},
               headers=h), 201)
    wl = _ok(c.post("/v1/workloads", json={
        "name": "web1", "project": PROJECT, "demand": {"vcpu": 1, "memory_mib": 96, "disk_gib": 0.0625},
        "networks": ["front"]}, headers=h), 201)
    assert wl["state"] == "running"
    svc.volumes.create_pool("sp", replicas=1, segment_mib=4)
    svc.volumes.add_device("sp", "d1", 64, path=str(ha_lab.root / "dev1"))
    svc.volumes.create_volume(PROJECT, "data", "sp", 8)
    svc.volumes.write_data(PROJECT, "data", 5 << 20, b"replicated bytes")
    svc.volumes.attach(PROJECT, "data", "web1")
    mac = svc.networks.list_nics(PROJECT, workload="web1")[0].mac
    a = next(x for x in ha_lab if x.name == wl["host"])
    b = next(x for x in ha_lab if x is not a)
    name = domain_name(f"{PROJECT}/web1")
    console = ha_lab.consoles / f"{name}.log"
    wait_marker(console, name, timeout_s=60)
    dw = DriverWorkload(f"{PROJECT}/web1", "vm", {})
    drv_a: Any = svc.drivers.driver_of(a.name)
    drv: Any = svc.drivers.driver_of(b.name)
    assert drv_a.state(a.name, dw) == "running" and not drv.exists(b.name, dw)
    assert len(a.processes()) >= 2 and len(b.processes()) == 1  # A: libvirtd + the guest; B: libvirtd

    t0 = time.monotonic()
    a.power_off()  # SIGKILL A's libvirtd and QEMU: only the PIDs of A's namespace and pidfiles
    wait_for(lambda: markers(console).count(name) >= 2, GOAL_S + 10, f"{name} booted again")
    took = time.monotonic() - t0
    print(f"\nHA real: kill of {a.name} -> marker of the restarted guest on {b.name}: {took:.1f} s")

    assert _state(c, h, a.name) == "fenced"
    fenced = [e for e in _ok(c.get("/v1/events", params={"kind": "host.fenced"}, headers=h))
              if e["subject"] == f"host/{a.name}"]
    assert fenced and "lab host" in fenced[-1]["message"]  # by the lab's fence agent
    assert a.processes() == []  # A can no longer run the guest
    got = _ok(c.get("/v1/workloads/web1", params={"project": PROJECT}, headers=h))
    assert (got["state"], got["host"]) == ("running", b.name)
    assert drv.state(b.name, dw) == "running"
    qemus = [p for p in b.processes() if "qemu-system" in Path(f"/proc/{p}/exe").resolve().name]
    assert len(qemus) == 1  # exactly one running copy, on B
    dom = libvirt.open(b.uri)
    try:
        xml = dom.lookupByName(name).XMLDesc(0)
    finally:
        dom.close()
    disks = disk_targets(xml)
    assert "vdb" in disks and disks["vdb"].endswith("--ha+data.raw"), disks  # the volume, re-plugged
    assert interface_by_mac(xml, mac) is not None  # and the NIC
    assert took <= GOAL_S, f"kill -> marker on {b.name} took {took:.1f}s (goal {GOAL_S:.0f}s)"

    # A powers on again: HA lets it rejoin, and it must really be empty (no stale guest or disk)
    a.start()
    wait_for(lambda: _state(c, h, a.name) == "up", 20, f"{a.name} rejoined")
    assert_host_empty(a.uri)
    assert markers(console).count(name) == 2  # the stale copy on A was not started

    _ok(c.post("/v1/workloads/web1/stop", params={"project": PROJECT}, headers=h))  # no hot-unplug under TCG
    assert c.delete("/v1/workloads/web1", params={"project": PROJECT}, headers=h).status_code == 204
    assert svc.volumes.read_data(PROJECT, "data", 5 << 20, 16) == b"replicated bytes"  # copied back
    for host in ha_lab:
        assert_host_empty(host.uri)
        assert c.delete(f"/v1/hosts/{host.name}", headers=h).status_code == 204
    assert [p for p in b.processes() if p != b.pid] == []  # no QEMU left on B
    assert svc.repair.check().ok
