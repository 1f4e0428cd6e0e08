"""End to end through the REST API with real guests: libvirt lab hosts and an LXC host added by
URI, a VM created by the API (its marker on the serial console of the chosen host), live-migrated
by a migrate task (its counter goes on on the destination), suspended and resumed, its balloon
taken down and given back by memory-reclaim rounds, snapshot and restore (snapshot tasks),
stopped and started, deleted; the same lifecycle for a container. Nothing is left behind on the hosts.

Killing a host's libvirtd and QEMU, HA fencing it and restarting the VM elsewhere: test_ha_real.py.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests_real_helpers import TICK_MS, assert_host_empty, wait_rollback

from poolvisor.api.app import create_app
from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.libvirt_xml import domain_name
from poolvisor.drivers.lxc import TOOLS
from poolvisor.lab import GuestImage, Lab, markers, wait_marker, wait_ticks
from poolvisor.lab.console import last_tick, wait_for
from poolvisor.services import Services, open_services
from poolvisor.services.balloon_loop import BalloonLoop
from realenv import require_real

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.real
PROJECT = "e2e"


@pytest.fixture
def api(tmp_path: Path, lab: Lab, guest_image: GuestImage,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str], Services]]:
    env = {"DOMAIN_TYPE": "qemu", "KERNEL": str(guest_image.kernel), "INITRD": str(guest_image.initrd),
           "CMDLINE": guest_image.cmdline("{name}", TICK_MS), "CONSOLE_DIR": str(lab.consoles),
           "STOP_TIMEOUT_S": "0"}
    for k, v in env.items():  # how an operator configures the guests `poolvisor serve` creates
        monkeypatch.setenv(f"POOLVISOR_LIBVIRT_{k}", v)
    # no periodic balloon round: the test runs its rounds itself (a calm round in between would
    # give the guest its memory back)
    monkeypatch.setattr(BalloonLoop, "wanted", staticmethod(lambda _services: False))
    svc = open_services(f"sqlite:///{tmp_path / 'e2e.db'}")
    token = svc.auth.bootstrap_admin_token()
    assert token is not None
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(svc), raise_server_exceptions=False) as c:
        assert c.post("/v1/projects", json={"name": PROJECT}, headers=headers).status_code == 201
        yield c, headers, svc
    svc.close()


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def _wait_task(c: TestClient, headers: dict[str, str], answer: Any, timeout: float = 120) -> dict[str, Any]:
    import time

    task = _ok(answer, 202)
    deadline = time.monotonic() + timeout
    while task["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, task
        time.sleep(0.1)
        task = _ok(c.get(f"/v1/tasks/{task['id']}", headers=headers))
    return dict(task)


def test_vm_through_the_api(api: tuple[TestClient, dict[str, str], Services], lab: Lab) -> None:
    c, h, svc = api
    _ok(c.post("/v1/pools", json={"name": "lab"}, headers=h), 201)
    for host in lab:
        out = _ok(c.post("/v1/hosts", json={"name": host.name, "driver": "libvirt", "uri": host.uri,
                                             "pool": "lab", "labels": {"kind": "vm"}}, headers=h), 201)
        assert out["capacity"]["vcpu"] >= 1 and out["capacity"]["memory_mib"] > 1000  # the node's own
    wl = _ok(c.post("/v1/workloads", json={
        "name": "web1", "project": PROJECT, "demand": {"vcpu": 1, "memory_mib": 96, "disk_gib": 0.0625},
        "required_labels": {"kind": "vm"}}, headers=h), 201)
    assert wl["state"] == "running"
    src = wl["host"]
    dst = next(x.name for x in lab if x.name != src)
    name = domain_name(f"{PROJECT}/web1")
    console = lab.consoles / f"{name}.log"
    wait_marker(console, name, timeout_s=60)  # the guest booted (on src: only src has the domain)
    before = wait_ticks(console, after=5)
    q = {"project": PROJECT}

    task = _wait_task(c, h, c.post("/v1/workloads/web1/migrate", params=q, json={"host": dst}, headers=h))
    assert task["state"] == "succeeded", task
    assert task["result"]["from"] == src and task["result"]["to"] == dst
    assert task["result"].get("downtime_ms") is not None
    assert _ok(c.get("/v1/workloads/web1", params=q, headers=h))["host"] == dst
    after = wait_ticks(console, after=before + 10)
    assert markers(console) == [name]  # no second boot: the same guest counts on, on dst
    dw = DriverWorkload(f"{PROJECT}/web1", "vm", {})
    drv: Any = svc.drivers.driver_of(dst)
    assert drv.exists(dst, dw) and not svc.drivers.driver_of(src).exists(src, dw)  # type: ignore[attr-defined]

    assert _ok(c.post("/v1/workloads/web1/suspend", params=q, headers=h))["state"] == "suspended"
    t = last_tick(console) or 0
    assert drv.state(dst, dw) == "suspended"
    assert _ok(c.post("/v1/workloads/web1/resume", params=q, headers=h))["state"] == "running"
    wait_ticks(console, after=t + 3)

    # memory pooling: a balloon round under pressure (a threshold far below the guest's share of
    # the node) takes the guest down to what it uses; a calm round gives it all back
    wait_for(lambda: drv.guest_memory(dst, dw).working_set_mib < 96, 10, "the guest's balloon report")
    rounds = _ok(c.post("/v1/pools/lab/memory-reclaim", json={"threshold": 1e-6}, headers=h))
    [ch] = next(r for r in rounds if r["host"] == dst)["changes"]
    assert ch["workload"] == f"{PROJECT}/web1" and ch["before_mib"] == 96
    assert ch["floor_mib"] - 1 <= ch["after_mib"] < 96  # not below what it uses
    wait_for(lambda: drv.guest_memory(dst, dw).balloon_mib < ch["after_mib"] + 2, 10, "the balloon down")
    t = last_tick(console) or 0
    wait_ticks(console, after=t + 3)
    rounds = _ok(c.post("/v1/pools/lab/memory-reclaim", json={"threshold": 1, "target_ratio": 1}, headers=h))
    [ch] = next(r for r in rounds if r["host"] == dst)["changes"]
    assert ch["after_mib"] == 96
    wait_for(lambda: drv.guest_memory(dst, dw).balloon_mib == 96, 10, "the balloon back at 96 MiB")

    # snapshot and restore through the API (tasks run by the server's executor)
    task = _wait_task(c, h, c.post("/v1/workloads/web1/snapshots", params=q, json={"name": "s1"}, headers=h))
    assert task["state"] == "succeeded", task
    at_snap = last_tick(console) or 0
    snaps = _ok(c.get("/v1/workloads/web1/snapshots", params=q, headers=h))
    assert [(x["name"], x["state"], x["host"], x["workload_state"]) for x in snaps] == [
        ("s1", "ready", dst, "running")]
    assert [i.name for i in svc.drivers.snapshots(dst).snapshot_list(dst, dw)] == ["s1"]  # on the host
    wait_ticks(console, after=at_snap + 20)
    offset = console.stat().st_size
    task = _wait_task(c, h, c.post("/v1/workloads/web1/snapshots/s1/restore", params=q, headers=h))
    assert task["state"] == "succeeded", task
    wait_rollback(console, offset, at_most=at_snap + 5)  # back in time, and counting on from there
    assert _ok(c.get("/v1/workloads/web1", params=q, headers=h))["state"] == "running"
    # libvirt cannot migrate a guest with snapshots: a declared 409 naming them, nothing queued
    r = c.post("/v1/workloads/web1/migrate", params=q, json={}, headers=h)
    assert r.status_code == 409 and r.json()["error"] == "refused_by_driver", r.text
    assert "has snapshots (s1)" in r.json()["message"]
    assert _ok(c.get("/v1/workloads/web1", params=q, headers=h))["host"] == dst
    assert c.delete("/v1/workloads/web1/snapshots/s1", params=q, headers=h).status_code == 204
    assert svc.drivers.snapshots(dst).snapshot_list(dst, dw) == []

    assert _ok(c.post("/v1/workloads/web1/stop", params=q, headers=h))["state"] == "stopped"
    assert drv.state(dst, dw) == "stopped"
    assert _ok(c.post("/v1/workloads/web1/start", params=q, headers=h))["state"] == "running"
    wait_marker(console, name, timeout_s=60, boots=2)  # a cold start boots again

    assert c.delete("/v1/workloads/web1", params=q, headers=h).status_code == 204
    for host in lab:
        assert_host_empty(host.uri)
        assert c.delete(f"/v1/hosts/{host.name}", headers=h).status_code == 204
    assert after > before
    assert svc.repair.check().ok


def test_container_through_the_api(api: tuple[TestClient, dict[str, str], Services], tmp_path: Path) -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    require_real(os.geteuid() == 0 and not missing, f"LXC needs root and {missing or 'the tools'}")
    c, h, svc = api
    path = tmp_path / "lxc-ct1"
    out = _ok(c.post("/v1/hosts", json={"name": "ct1", "driver": "lxc", "uri": f"lxc://{path}",
                                         "labels": {"kind": "container"}}, headers=h), 201)
    assert out["capacity"]["vcpu"] >= 1
    wl = _ok(c.post("/v1/workloads", json={
        "name": "box1", "project": PROJECT, "kind": "container", "demand": {"vcpu": 0.5, "memory_mib": 64},
        "required_labels": {"kind": "container"}}, headers=h), 201)
    assert (wl["state"], wl["host"], wl["kind"]) == ("running", "ct1", "container")
    drv: Any = svc.drivers.driver_of("ct1")
    dw = DriverWorkload(f"{PROJECT}/box1", "container", {})
    assert drv.attach("ct1", dw, ["/bin/sh", "-c", "echo up-$(hostname)"]).strip() == f"up-{PROJECT}+box1"
    q = {"project": PROJECT}
    assert _ok(c.post("/v1/workloads/box1/suspend", params=q, headers=h))["state"] == "suspended"
    assert drv.state("ct1", dw) == "suspended"
    assert _ok(c.post("/v1/workloads/box1/resume", params=q, headers=h))["state"] == "running"
    assert _ok(c.post("/v1/workloads/box1/stop", params=q, headers=h))["state"] == "stopped"
    assert _ok(c.post("/v1/workloads/box1/start", params=q, headers=h))["state"] == "running"
    assert drv.state("ct1", dw) == "running"
    # LXC cannot live-migrate: the task is refused at once or fails, the container stays
    r = c.post("/v1/workloads/box1/migrate", params=q, json={}, headers=h)
    assert r.status_code in (202, 409), r.text
    if r.status_code == 202:
        assert _wait_task(c, h, r)["state"] in ("failed", "rolled_back")
    assert _ok(c.get("/v1/workloads/box1", params=q, headers=h))["host"] == "ct1"
    assert c.delete("/v1/workloads/box1", params=q, headers=h).status_code == 204
    assert list(path.iterdir()) == []
    assert c.delete("/v1/hosts/ct1", headers=h).status_code == 204
    assert svc.repair.check().ok
