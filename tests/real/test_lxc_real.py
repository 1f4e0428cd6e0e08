"""The LXC driver on this machine: a busybox container's whole lifecycle, its cgroup limits and
stats, fencing; nothing left behind. Marked real (needs root and the LXC tools)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from poolvisor.drivers.base import DriverError, DriverWorkload
from poolvisor.drivers.conformance import check_conformance
from poolvisor.drivers.lxc import TOOLS, LxcConfig, LxcDriver
from poolvisor.drivers.protocols import HostBinding
from realenv import require_real

pytestmark = pytest.mark.real


@pytest.fixture
def lxc(tmp_path: Path) -> LxcDriver:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    require_real(os.geteuid() == 0 and not missing, f"LXC needs root and {missing or 'the tools'}")
    d = LxcDriver(config=LxcConfig(stop_timeout_s=0))
    d.connect(HostBinding("c1", "lxc", f"lxc://{tmp_path}/c1"))
    d.connect(HostBinding("c2", "lxc", f"lxc://{tmp_path}/c2"))
    yield d
    for h in ("c1", "c2"):
        for name in d._ours(h):
            d.delete(h, DriverWorkload(d._key(name), "container", {}))
        assert list((tmp_path / h).iterdir()) == [], f"left on {h}"


def test_container_lifecycle(lxc: LxcDriver) -> None:
    w = DriverWorkload("real/box-1", "container", {"vcpu": 0.5, "memory_mib": 64})
    lxc.create("c1", w)
    lxc.create("c1", w)  # idempotent
    assert lxc.exists("c1", w) and not lxc.exists("c2", w)
    assert lxc.state("c1", w) == "running"
    assert lxc.attach("c1", w, ["/bin/sh", "-c", "echo marker-$(hostname)"]).strip() == "marker-real+box-1"
    sample = lxc.workload_stats("c1")[w.key]
    assert sample.state == "running" and sample.memory_mb == 64 and sample.cpu_time_s is not None
    assert 0 < sample.memory_used_mb <= 64
    st = lxc.stats("c1")
    assert st.states == {w.key: "running"} and st.used == {"vcpu": 0.5, "memory_mib": 64}
    info = lxc.host_info("c1")
    assert info.hypervisor == "LXC" and info.capacity["vcpu"] >= 1
    lxc.suspend("c1", w)
    assert lxc.state("c1", w) == "suspended"
    lxc.resume("c1", w)
    assert lxc.state("c1", w) == "running"
    lxc.stop("c1", w)
    assert lxc.state("c1", w) == "stopped"
    with pytest.raises(DriverError):
        lxc.attach("c1", w, ["true"])
    lxc.start("c1", w)
    assert lxc.state("c1", w) == "running"
    lxc.delete("c1", w)
    assert not lxc.exists("c1", w)
    lxc.delete("c1", w)  # idempotent


def test_fence_kills_containers_and_refuses_new_ones(lxc: LxcDriver) -> None:
    w = DriverWorkload("real/box-2", "container", {})
    lxc.create("c2", w)
    lxc.fence("c2")
    assert lxc.heartbeat("c2") is False and not lxc.exists("c2", w)
    with pytest.raises(DriverError, match="fenced"):
        lxc.create("c2", DriverWorkload("real/box-3", "container", {}))
    lxc.unfence("c2")
    assert lxc.state("c2", w) == "stopped"


def test_conformance(lxc: LxcDriver, tmp_path: Path) -> None:
    """The contract every driver is held to (drivers/conformance.py): LXC declares no migration
    or snapshots, so lifecycle, stats, host info and heartbeat."""
    w = DriverWorkload("real/box-4", "container", {"vcpu": 0.5, "memory_mib": 64})
    assert check_conformance(lxc, HostBinding("c1", "lxc", f"lxc://{tmp_path}/c1"), w) == []
    assert not lxc.exists("c1", w)
