"""Drivers carry lifecycle actions out on hosts; `sim` is the in-process reference driver.

A driver declares the capability protocols it implements (protocols.py); a host is bound to a
driver name and URI (its row), and services get the host's driver instance from a DriverPool.
"""

from poolvisor.drivers.base import DriverError, DriverWorkload, HostStats
from poolvisor.drivers.protocols import Capability, HostBinding, HostDriver, require
from poolvisor.drivers.registry import make_driver, register_driver

__all__ = ["Capability", "DriverError", "DriverWorkload", "HostBinding", "HostDriver", "HostStats",
           "make_driver", "register_driver", "require"]
