"""Driver registry: name -> factory `(uri="", **options) -> HostDriver`, extended by the
`poolvisor.drivers` entry-point group (libvirt, lxc and third-party drivers register there or
through register_driver)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.base import DriverError
from poolvisor.drivers.lxc import LxcDriver
from poolvisor.drivers.protocols import HostDriver
from poolvisor.drivers.sim import SimDriver


def _libvirt(uri: str = "", **options: Any) -> HostDriver:
    """Imported on use: libvirt-python is an optional extra (`.[libvirt]`)."""
    try:
        from poolvisor.drivers.libvirt import LibvirtDriver
    except ImportError as e:
        raise DriverError(f"driver 'libvirt' needs libvirt-python on the server ({e})") from None
    try:
        return LibvirtDriver(uri, **options)
    except ValueError as e:  # POOLVISOR_LIBVIRT_* or serve options: the server's setting, not the request
        raise DriverError(f"driver 'libvirt' is misconfigured on the server: {e}") from None


def _lxc(uri: str = "", **options: Any) -> HostDriver:
    try:
        return LxcDriver(uri, **options)
    except (ValueError, TypeError) as e:
        raise DriverError(f"driver 'lxc' is misconfigured on the server: {e}") from None


DRIVERS: dict[str, Callable[..., HostDriver]] = {"sim": SimDriver, "libvirt": _libvirt, "lxc": _lxc}
_plugins_loaded = False


def register_driver(name: str, factory: Callable[..., HostDriver]) -> None:
    DRIVERS[name] = factory


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="poolvisor.drivers"):
        DRIVERS.setdefault(ep.name, ep.load())


def known_drivers() -> list[str]:
    _load_plugins()
    return sorted(DRIVERS)


def make_driver(name: str, uri: str = "", **options: Any) -> HostDriver:
    """A new driver instance for `uri`; InvalidInputError (422) for an unknown driver name."""
    _load_plugins()
    try:
        factory = DRIVERS[name]
    except KeyError:
        raise InvalidInputError(f"unknown driver {name!r}; known: {', '.join(sorted(DRIVERS))}") from None
    return factory(uri=uri, **options)
