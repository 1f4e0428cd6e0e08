"""Capability protocols: require() refuses undeclared capabilities with a 409 naming driver and host."""

from __future__ import annotations

import pytest

from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.protocols import (
    Capability,
    HostBinding,
    Lifecycle,
    UnsupportedByDriver,
    as_lifecycle,
    as_migration,
    require,
    supports,
)


class _LifecycleOnly:
    name = "lxc"
    capabilities = frozenset({Capability.LIFECYCLE})

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []

    def create(self, host: str, workload: DriverWorkload) -> None:
        self.made.append((host, workload.key))

    def start(self, host: str, workload: DriverWorkload) -> None: ...
    def stop(self, host: str, workload: DriverWorkload) -> None: ...
    def suspend(self, host: str, workload: DriverWorkload) -> None: ...
    def resume(self, host: str, workload: DriverWorkload) -> None: ...
    def delete(self, host: str, workload: DriverWorkload) -> None: ...

    def exists(self, host: str, workload: DriverWorkload) -> bool:
        return (host, workload.key) in self.made


class _Liar:
    name = "liar"
    capabilities = frozenset({Capability.MIGRATION})


def test_require_refuses_undeclared_capability_with_409() -> None:
    d = _LifecycleOnly()
    with pytest.raises(UnsupportedByDriver) as e:
        as_migration(d, host="h3")
    assert e.value.status_code == 409
    assert e.value.message == "driver 'lxc' of host h3 cannot live-migrate"
    assert e.value.detail == {"driver": "lxc", "host": "h3", "capability": "migration"}
    with pytest.raises(UnsupportedByDriver, match="cannot take snapshots"):
        require(d, Capability.SNAPSHOTS)


def test_require_passes_declared_capability_and_returns_it_typed() -> None:
    d = _LifecycleOnly()
    assert supports(d, Capability.LIFECYCLE) and not supports(d, Capability.MIGRATION)
    lc: Lifecycle = as_lifecycle(d, host="h1")
    lc.create("h1", DriverWorkload("p/a", "vm", {"vcpu": 1}))
    assert d.exists("h1", DriverWorkload("p/a", "vm", {}))


def test_declared_but_unimplemented_capability_is_a_driver_bug() -> None:
    with pytest.raises(TypeError, match="declares migration but does not implement Migration"):
        require(_Liar(), Capability.MIGRATION)


def test_binding_defaults_to_the_sim_driver() -> None:
    b = HostBinding("h1")
    assert (b.driver, b.uri) == ("sim", "")
