"""Driver registry: name -> factory, extended by the `poolvisor.drivers` entry-point group."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.base import Driver
from poolvisor.drivers.lxc import LxcDriver
from poolvisor.drivers.sim import SimDriver


def _libvirt(**options: Any) -> Any:
    """Imported on use: libvirt-python is an optional extra (`.[libvirt]`)."""
    try:
        from poolvisor.drivers.libvirt import LibvirtDriver
    except ImportError as e:
        raise InvalidInputError(f"driver 'libvirt' needs libvirt-python ({e})") from None
    return LibvirtDriver(**options)


def _lxc(**options: Any) -> Any:
    return LxcDriver(**options)


DRIVERS: dict[str, Callable[..., Driver]] = {"sim": SimDriver, "libvirt": _libvirt, "lxc": _lxc}
_plugins_loaded = False


def register_driver(name: str, factory: Callable[..., Driver]) -> None:
    DRIVERS[name] = factory


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="poolvisor.drivers"):
        DRIVERS.setdefault(ep.name, ep.load())


def make_driver(name: str, **options: Any) -> Driver:
    _load_plugins()
    try:
        factory = DRIVERS[name]
    except KeyError:
        raise InvalidInputError(f"unknown driver {name!r}; known: {', '.join(sorted(DRIVERS))}") from None
    return factory(**options)
