"""Sim fault injection: kill and revive sim hosts, make sim operations fail.

Only the sim admin API extension (api/routes/sim_admin.py, mounted by `serve --demo` or `serve
--sim-admin`) and tests use this; no other use case does. A host run by another driver is refused
(409): fault injection exists only in the sim's model.
"""

from __future__ import annotations

from typing import Any

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.domain.models import HostState
from poolvisor.drivers.sim import OPERATIONS, SimDriver
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.hosts import HostService
from poolvisor.services.records import HostRecord

MAX_TIMES = 1_000_000


class SimAdminService(ServiceBase):
    def __init__(self, ctx: ServiceContext, hosts: HostService) -> None:
        super().__init__(ctx)
        self.hosts = hosts

    def _sim(self, host: str) -> SimDriver:
        self.hosts.get_host(host)  # 404 first
        d = self.drivers.driver_of(host)
        if not isinstance(d, SimDriver):
            raise ConflictError(f"host {host} runs driver {d.name!r}: fault injection is sim-only",
                                detail={"host": host, "driver": d.name})
        return d

    def fail_host(self, name: str) -> HostRecord:
        """The sim host dies (no heartbeat, its workloads gone); they become lost."""
        self._sim(name).fail(name)
        return self.hosts.mark_state(name, HostState.DOWN, "host.failed", "failed (sim fault injection)")

    def revive_host(self, name: str) -> HostRecord:
        """The sim host comes back, empty, and is up again."""
        self._sim(name).revive(name)
        return self.hosts.mark_state(name, HostState.UP, "host.revived", "revived (sim fault injection)")

    def partition(self, name: str, cut: bool = True) -> HostRecord:
        """Cut (or heal) the sim host's management network: alive, its guests running, but no
        heartbeat and no operation answers; HA must fence it before restarting its workloads."""
        self._sim(name).partition(name, cut)
        return self.hosts.get_host(name)

    def inject(self, op: str, host: str | None = None, times: int = 1) -> dict[str, Any]:
        """The next `times` sim operations `op` (on `host`, or on any host of the default sim) fail."""
        if op not in OPERATIONS:
            raise InvalidInputError(f"unknown sim operation {op!r}; known: {', '.join(OPERATIONS)}")
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_TIMES:
            raise InvalidInputError(f"times must be an integer in 1..{MAX_TIMES}")
        d = self._sim(host) if host is not None else self.drivers.default
        assert isinstance(d, SimDriver)  # the default driver (URI "") is always the sim
        d.inject(op, host, times)
        return {"operation": op, "host": host, "times": times}
