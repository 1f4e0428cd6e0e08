"""The LXC driver's pure parts: URIs, names, cgroup limits (the real lifecycle: tests/real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload
from poolvisor.drivers.lxc import LxcDriver, cgroup_limits, container_name, lxc_path
from poolvisor.drivers.protocols import Capability, UnsupportedByDriver, as_migration, as_snapshots


def test_uri_is_a_local_lxc_path() -> None:
    assert lxc_path("lxc:///srv/lxc") == Path("/srv/lxc")
    assert lxc_path("/srv/lxc") == Path("/srv/lxc")
    assert lxc_path("").is_absolute()
    for bad in ("lxc://node7/srv", "lxc:relative", "qemu:///system"):
        with pytest.raises(DriverError, match="lxc:///"):
            lxc_path(bad)


def test_names_and_limits() -> None:
    assert container_name("proj/web.1") == "proj+web.1"
    assert cgroup_limits({"memory_mib": 64, "vcpu": 0.5}, v1=True) == [
        "lxc.cgroup.memory.limit_in_bytes = 67108864", "lxc.cgroup.cpu.cfs_period_us = 100000",
        "lxc.cgroup.cpu.cfs_quota_us = 50000"]
    assert cgroup_limits({"memory_mib": 64, "vcpu": 2}, v1=False) == [
        "lxc.cgroup2.memory.max = 67108864", "lxc.cgroup2.cpu.max = 200000 100000"]
    assert cgroup_limits({}, v1=True) == []


def test_declares_no_migration_or_snapshots() -> None:
    d = LxcDriver()
    assert Capability.LIFECYCLE in d.capabilities
    with pytest.raises(UnsupportedByDriver):
        as_migration(d, host="c1")
    with pytest.raises(UnsupportedByDriver):
        as_snapshots(d, host="c1")


def test_refuses_vms_and_unknown_hosts(tmp_path: Path) -> None:
    d = LxcDriver()
    with pytest.raises(DriverError, match="not connected"):
        d.create("nowhere", DriverWorkload("p/c", "container", {}))
    d._paths["h"] = tmp_path  # connected without touching the tools
    with pytest.raises(DriverRefusal, match="runs containers"):
        d.create("h", DriverWorkload("p/v", "vm", {}))
    assert not d.exists("h", DriverWorkload("p/v", "vm", {}))
    with pytest.raises(DriverError, match="no container"):
        d.start("h", DriverWorkload("p/v", "container", {}))


def test_config_from_env_and_options() -> None:
    from poolvisor.drivers.lxc import LxcConfig

    assert LxcConfig.from_env({"POOLVISOR_LXC_STOP_TIMEOUT_S": "0"}).stop_timeout_s == 0.0
    assert LxcConfig.from_env({}, template="busybox", stop_timeout_s=3).stop_timeout_s == 3.0
    for env, opts in (({"POOLVISOR_LXC_STOP_TIMEOUT_S": "later"}, {}), ({}, {"stop_timeout_s": -1}),
                      ({}, {"colour": "red"})):
        with pytest.raises(ValueError):
            LxcConfig.from_env(env, **opts)


def test_misconfigured_real_drivers_are_503_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad server setting (environment or serve options) is the server's fault: DriverError
    (503), never a ValueError that would surface as a 500."""
    from poolvisor.drivers.registry import make_driver

    monkeypatch.setenv("POOLVISOR_LXC_STOP_TIMEOUT_S", "soon")
    with pytest.raises(DriverError, match="misconfigured"):
        make_driver("lxc", uri="lxc:///tmp/x")
    pytest.importorskip("libvirt")
    monkeypatch.setenv("POOLVISOR_LIBVIRT_DOMAIN_TYPE", "xen")
    with pytest.raises(DriverError, match="misconfigured"):
        make_driver("libvirt", uri="qemu:///system")


def test_connect_makes_the_directory_but_no_missing_parent(tmp_path: Path) -> None:
    import shutil as sh

    from realenv import require_real

    require_real(all(sh.which(t) for t in ("lxc-create", "lxc-ls")), "LXC tools not installed")
    from poolvisor.drivers.protocols import HostBinding

    d = LxcDriver()
    d.connect(HostBinding("a", "lxc", f"lxc://{tmp_path}/here"))
    assert (tmp_path / "here").is_dir()
    with pytest.raises(DriverError, match="cannot use"):
        d.connect(HostBinding("b", "lxc", f"lxc://{tmp_path}/missing/here"))
    assert not (tmp_path / "missing").exists()
