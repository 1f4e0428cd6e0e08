"""DriverPool: the driver instance of each host, so one pool can mix sim, libvirt and LXC hosts.

Instances are cached per (driver name, URI) and made through the registry with that driver's
options; a host is bound to its instance by `bind` (the host row's driver, uri, capacity). A host
the pool has not bound yet (created by another process, or before a restart) is looked up with
the `resolver` (services read the host row) and bound on first use; when the resolver knows
nothing, the host is the default sim driver's (the database is the authority, as in the sim).
Services ask for a capability (`pool.lifecycle(host)`), which raises the 409 of require() when
the host's driver does not declare it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from poolvisor.drivers.base import DriverError
from poolvisor.drivers.protocols import (
    Balloon,
    Fencing,
    HostBinding,
    HostDriver,
    Lifecycle,
    Migration,
    NicAttach,
    Power,
    Snapshots,
    VolumeAttach,
    WorkloadStats,
    as_balloon,
    as_fencing,
    as_lifecycle,
    as_migration,
    as_nic_attach,
    as_power,
    as_snapshots,
    as_volume_attach,
    as_workload_stats,
)
from poolvisor.drivers.registry import known_drivers, make_driver
from poolvisor.drivers.sim import SimFabric

DEFAULT_DRIVER = "sim"
Resolver = Callable[[str], HostBinding | None]


class DriverPool:
    def __init__(self, options: Mapping[str, Mapping[str, Any]] | None = None,
                 resolver: Resolver | None = None) -> None:
        self._options = {k: dict(v) for k, v in (options or {}).items()}
        # sim instances of one pool share a fabric, so workloads migrate between sim URIs
        self._options.setdefault("sim", {}).setdefault("fabric", SimFabric())
        self._instances: dict[tuple[str, str], HostDriver] = {}
        self._bindings: dict[str, HostBinding] = {}
        self._lock = threading.RLock()
        self.resolver = resolver

    def instance(self, driver: str, uri: str = "") -> HostDriver:
        """The (cached) instance serving `uri` with `driver`. A driver not installed in this
        process (a host row naming it, e.g. written by a server that has it) is a DriverError (503)."""
        with self._lock:
            d = self._instances.get((driver, uri))
            if d is None:
                if driver not in known_drivers():
                    raise DriverError(f"driver {driver!r} is not available in this server; known: "
                                      f"{', '.join(known_drivers())}")
                d = make_driver(driver, uri=uri, **self._options.get(driver, {}))  # 422: a bad URI
                self._instances[(driver, uri)] = d
            return d

    @property
    def default(self) -> HostDriver:
        """The default sim driver (URI ""): what hosts without a binding run on."""
        return self.instance(DEFAULT_DRIVER, "")

    def bind(self, host: HostBinding) -> HostDriver:
        """Bind `host` to its driver instance and connect it (DriverError if unreachable)."""
        d = self.instance(host.driver, host.uri)
        d.connect(host)
        with self._lock:
            old = self._bindings.get(host.name)
            self._bindings[host.name] = host
        if old is not None and (old.driver, old.uri) != (host.driver, host.uri):
            self.instance(old.driver, old.uri).disconnect(host.name)
        return d

    def unbind(self, host: str) -> None:
        with self._lock:
            b = self._bindings.pop(host, None)
        if b is not None:
            self.instance(b.driver, b.uri).disconnect(host)

    def binding(self, host: str) -> HostBinding:
        with self._lock:
            b = self._bindings.get(host)
        if b is not None:
            return b
        found = self.resolver(host) if self.resolver is not None else None
        b = found or HostBinding(host)
        self.bind(b)
        return b

    def bindings(self) -> list[HostBinding]:
        with self._lock:
            return sorted(self._bindings.values(), key=lambda b: b.name)

    def driver_of(self, host: str) -> HostDriver:
        b = self.binding(host)
        return self.instance(b.driver, b.uri)

    def quick(self, host: str, op: str) -> bool:
        """May `op` on `host` run on a thread that must not wait (the writer: services/flow.py)?
        Only when the host is bound already and its driver says the call is in-process and quick
        (the sim driver without injected delays); libvirt, LXC and the lab wait on the host."""
        with self._lock:
            b = self._bindings.get(host)
            d = self._instances.get((b.driver, b.uri)) if b is not None else None
        quick = getattr(d, "quick", None)
        return bool(quick is not None and quick(op))

    # ---- capabilities of a host's driver (409 unsupported_by_driver when not declared) ---------
    def lifecycle(self, host: str) -> Lifecycle:
        return as_lifecycle(self.driver_of(host), host=host)

    def migration(self, host: str, live: bool = True) -> Migration:
        return as_migration(self.driver_of(host), host=host, live=live)

    def snapshots(self, host: str) -> Snapshots:
        return as_snapshots(self.driver_of(host), host=host)

    def workload_stats(self, host: str) -> WorkloadStats:
        return as_workload_stats(self.driver_of(host), host=host)

    def balloon(self, host: str) -> Balloon:
        return as_balloon(self.driver_of(host), host=host)

    def volume_attach(self, host: str) -> VolumeAttach:
        return as_volume_attach(self.driver_of(host), host=host)

    def nic_attach(self, host: str) -> NicAttach:
        return as_nic_attach(self.driver_of(host), host=host)

    def fencing(self, host: str) -> Fencing:
        return as_fencing(self.driver_of(host), host=host)

    def power(self, host: str) -> Power:
        return as_power(self.driver_of(host), host=host)
