"""The shared context every domain service is built on: one per Services instance.

It holds what use cases share and nothing else: the store (transactions), the driver pool (each
host's own driver: `drivers.lifecycle(host)`, `drivers.driver_of(host)`, drivers/pool.py), the
placement policy, the generation-guarded placement cache, this process's leases and the event
that wakes the task executor. Domain services (catalog, hosts, workloads, ...) each take the
context and, when they need another domain, that domain's service explicitly (facade.py wires
them); none inherits another's use cases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.orm import Session

from poolvisor.drivers.pool import DriverPool
from poolvisor.policies.placement import PlacementPolicy
from poolvisor.services.leases import Leases
from poolvisor.services.placement_cache import PlacementCache
from poolvisor.store.engine import Store

T = TypeVar("T")


@dataclass
class ServiceContext:
    store: Store
    drivers: DriverPool  # the driver instance of each host; a capability per host, or 409
    policy: PlacementPolicy
    cache: PlacementCache
    leases: Leases
    task_wakeup: threading.Event = field(default_factory=threading.Event)  # set by task submissions

    def read(self, fn: Callable[[Session], T]) -> T:
        """Run `fn` in one read-only transaction (run again on a transient conflict)."""
        return self.store.run(fn, write=False)

    def write(self, fn: Callable[[Session], T], *, grouped: bool = False, hosts: tuple[int, ...] = ()) -> T:
        """Run `fn` in one write transaction, run again while it raises Stale (store/retry.py).
        `grouped`: a short database-only write that may share a transaction with other requests'
        (store/group.py; the hot create and delete steps); `hosts`: the hosts whose rows it locks."""
        return self.store.run(fn, write=True, grouped=grouped, hosts=hosts)

    def write_once(self, fn: Callable[[Session], T], *, grouped: bool = False) -> T:
        """One attempt: Stale reaches the caller (its decision, taken before, must be retaken)."""
        return self.store.run_once(fn, write=True, grouped=grouped)
