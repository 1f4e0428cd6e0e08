"""Drivers carry lifecycle actions out on hosts; `sim` is the in-process reference driver."""

from poolvisor.drivers.base import Driver, DriverError, DriverWorkload, HostStats
from poolvisor.drivers.registry import make_driver, register_driver

__all__ = ["Driver", "DriverError", "DriverWorkload", "HostStats", "make_driver", "register_driver"]
