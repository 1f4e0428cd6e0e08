"""Fence agents: command (a real script), driver, sim, none; and set_host_state('fenced') through them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.drivers import DriverWorkload
from poolvisor.drivers.pool import DriverPool
from poolvisor.drivers.protocols import HostBinding
from poolvisor.fencing import (
    CommandAgent,
    DriverAgent,
    FenceFailed,
    NoneAgent,
    SimAgent,
    check_method,
    make_agent,
)
from poolvisor.services import open_services


def script(tmp_path: Path, body: str) -> str:
    p = tmp_path / "fence.sh"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


def test_command_agent_runs_the_program_with_the_host_and_reads_its_exit(tmp_path: Path) -> None:
    log = tmp_path / "fenced"
    ok = script(tmp_path, f'echo "$1 $POOLVISOR_DRIVER $POOLVISOR_URI" >> {log}\necho "power off $1"\n')
    r = CommandAgent([ok]).fence(HostBinding("h7", "libvirt", "qemu+ssh://h7/system"))
    assert r.ok and r.agent == "command" and r.reason == "power off h7"
    assert log.read_text() == "h7 libvirt qemu+ssh://h7/system\n"

    bad = script(tmp_path, 'echo "BMC unreachable" >&2\nexit 3\n')
    r = CommandAgent([bad]).fence(HostBinding("h7"))
    assert not r.ok and r.reason == "fence command exited 3: BMC unreachable"

    r = CommandAgent([str(tmp_path / "missing")]).fence(HostBinding("h7"))
    assert not r.ok and "not found" in r.reason
    slow = script(tmp_path, "sleep 5\n")
    r = CommandAgent([slow], timeout_s=0.3).fence(HostBinding("h7"))
    assert not r.ok and "did not finish within 0.3 s" in r.reason


def test_methods_are_validated() -> None:
    for good in ("driver", "sim", "none", "command:/usr/bin/fence_ipmi --lanplus"):
        assert check_method(good) == good
    for bad in ("", "ipmi", "command:", "command:  ", "driver:x", "command:'unclosed", "command:a\x1bb"):
        with pytest.raises(InvalidInputError):
            check_method(bad)
    pool = DriverPool()
    assert isinstance(make_agent("command:/bin/true -v", pool), CommandAgent)
    assert make_agent("command:/bin/true -v", pool).argv == ["/bin/true", "-v"]  # type: ignore[attr-defined]
    assert isinstance(make_agent("driver", pool), DriverAgent)
    assert isinstance(make_agent("sim", pool), SimAgent)
    assert not make_agent("none", pool).ha_capable and isinstance(make_agent("none", pool), NoneAgent)


def test_driver_and_sim_agents() -> None:
    pool = DriverPool()
    b = HostBinding("h1")
    pool.bind(b)
    pool.lifecycle("h1").create("h1", DriverWorkload("p/w", "vm", {}))
    r = DriverAgent(pool).fence(b)
    assert r.ok and not pool.default.heartbeat("h1")
    DriverAgent(pool).unfence(b)
    assert pool.default.heartbeat("h1")
    assert SimAgent(pool).fence(b).ok
    r = SimAgent(pool).fence(HostBinding("v1", "libvirt", "qemu:///system"))
    assert not r.ok and "only fences sim hosts" in r.reason
    assert not NoneAgent().fence(b).ok


def test_set_host_state_fenced_goes_through_the_hosts_agent(tmp_path: Path) -> None:
    svc = open_services(f"sqlite:///{tmp_path / 'f.db'}")
    try:
        svc.catalog.create_project("demo")
        svc.catalog.create_flavor("unit", {"vcpu": 1})
        marker = tmp_path / "off"
        good = script(tmp_path, f"touch {marker}\n")
        svc.hosts.create_host("cmd", {"vcpu": 4}, labels={"role": "cmd"}, fence=f"command:{good}")
        svc.hosts.create_host("nofence", {"vcpu": 4}, fence="none")
        failing = tmp_path / "fail.sh"
        failing.write_text("#!/bin/sh\necho 'PDU says no' >&2\nexit 1\n")
        os.chmod(failing, 0o755)
        svc.hosts.create_host("broken", {"vcpu": 4}, fence=f"command:{failing}")
        w = svc.workloads.create_workload("demo", "vm1", flavor="unit", required_labels={"role": "cmd"})
        assert w.host == "cmd"
        with pytest.raises(InvalidInputError, match="unknown fence method"):
            svc.hosts.create_host("x", {"vcpu": 1}, fence="ipmi")

        # a failing agent changes nothing (503); 'none' is refused (409)
        with pytest.raises(FenceFailed, match="PDU says no") as e:
            svc.hosts.set_host_state("broken", "fenced")
        assert e.value.status_code == 503 and svc.hosts.get_host("broken").state == "up"
        with pytest.raises(ConflictError, match="fence method 'none'"):
            svc.hosts.set_host_state("nofence", "fenced")
        assert svc.hosts.get_host("nofence").state == "up"

        assert not marker.exists()
        svc.hosts.set_host_state("cmd", "fenced")
        assert marker.exists() and svc.hosts.get_host("cmd").state == "fenced"
        assert svc.workloads.get_workload("demo", "vm1").state == "lost"  # gone only once fencing succeeded
        ev = [e for e in svc.events.list_events() if e.kind == "host.state"][0]
        assert "(command: fence command succeeded)" in ev.message
        assert svc.hosts.get_host("cmd").fence == f"command:{good}" and svc.repair.check().ok
    finally:
        svc.close()
