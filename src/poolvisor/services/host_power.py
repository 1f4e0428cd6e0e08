"""Standby hosts back into service: when they finish booting, and on demand for a creation.

The controller's power management (controller.py) switches empty hosts off (state `standby`) and
one back on when a pool's load rises. Two things here are shared by it and by the create path:

* `sync()`: a standby host whose driver says it is on (it finished booting) is `up` again. The
  controller runs it every round, and the request queue before each drain, so a creation that
  waits for a booting host is placed as soon as the host is up;
* `wake_for(pool, demand, workload)`: a creation found no room (NoValidHostError): when a standby
  host of its pool (any pool when none is named) could hold the demand on its own, it is switched
  on through its driver (`Capability.POWER`; the sim driver models the boot time), one booting
  host at a time per request (a host already booting that fits is reused), with a
  `controller.power_on` event explaining why. The create then either succeeds at once (a host
  that boots instantly is synced and placement tries again) or fails with the host named, and a
  create that waits (`wait: true`) is placed from the queue when the host is up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from poolvisor.domain.errors import PoolvisorError
from poolvisor.domain.models import HostState
from poolvisor.drivers.base import DriverError
from poolvisor.drivers.protocols import POWER_BOOTING, POWER_ON, Capability, supports
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.hosts import HostService
from poolvisor.services.records import HostRecord

log = logging.getLogger("poolvisor.controller")
RULE = "a creation found no room: a standby host that can hold it is switched on"


@dataclass(frozen=True)
class Wake:
    """What `wake_for` did: `host` switched on (or found booting), `ready` when it is up already."""

    host: str
    ready: bool
    already_booting: bool

    @property
    def message(self) -> str:
        if self.ready:
            return f"standby host {self.host} was switched on and is up"
        verb = "is already booting" if self.already_booting else "is powering on"
        return (f"standby host {self.host} {verb} for it; create with wait to be placed there "
                "once it is up (vm create --queue), or retry then")


class HostPowerService(ServiceBase):
    def __init__(self, ctx: ServiceContext, hosts: HostService) -> None:
        super().__init__(ctx)
        self.hosts = hosts
        self._sync = threading.Lock()  # the controller, the queue and creations sync: one at a time

    def _power_state(self, host: str) -> str | None:
        if not supports(self.drivers.driver_of(host), Capability.POWER):
            return None
        try:
            return self.drivers.power(host).power_state(host)
        except DriverError:
            return None

    def sync(self) -> list[str]:
        """Standby hosts whose driver reports them on are up again; returns them."""
        back = []
        with self._sync:
            for h in self.hosts.list_hosts():
                if h.state == HostState.STANDBY.label and self._power_state(h.name) == POWER_ON:
                    self.hosts.mark_state(h.name, HostState.UP, "host.state", "booted: back in the pool")
                    back.append(h.name)
        return back

    def wake_for(self, pool: str | None, demand: dict[str, float], workload: str) -> Wake | None:
        """Switch on a standby host that could hold `demand` alone (module doc); None when no
        standby host can (or none can be powered)."""
        fits = [h for h in self.hosts.list_hosts(pool)
                if h.state == HostState.STANDBY.label and _holds(h, demand)]
        booting = [h for h in fits if self._power_state(h.name) == POWER_BOOTING]
        if booting:
            return Wake(booting[0].name, False, True)
        for h in sorted(fits, key=lambda r: (-r.capacity.get("vcpu", 0.0), r.name)):
            if self._power_state(h.name) is None:
                continue
            try:
                self.drivers.power(h.name).power_on(h.name)
            except (DriverError, PoolvisorError) as e:
                log.warning("waking host %s for %s failed: %s", h.name, workload, e.message)
                continue
            data = {"rule": RULE, "workload": workload, "figures": {k: float(v) for k, v in demand.items()},
                    "alternatives": [r.name for r in fits if r.name != h.name][:5]}
            self._record(h.name, f"controller: host {h.name} powering on: {workload} found no room", data)
            ready = h.name in self.sync()
            return Wake(h.name, ready, False)
        return None


    def _record(self, host: str, message: str, data: dict[str, Any]) -> None:
        def tx(s: Session) -> None:
            self._event(s, "controller.power_on", f"host/{host}", message, data=data)

        self._write(tx)


def _holds(h: HostRecord, demand: dict[str, float]) -> bool:
    """`h`, empty and up, could hold `demand` (its allocatable capacity, every resource asked)."""
    room = h.allocatable or h.capacity
    return all(float(room.get(k, 0.0)) >= float(v) - 1e-9 for k, v in demand.items() if v > 0)
