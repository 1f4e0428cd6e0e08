"""The periodic balloon round of `poolvisor serve`: MemoryService.reclaim() every `interval` s.

Started with the API's lifespan (api/app.py) when the driver has a memory balloon. Hosts under
pressure give back unused memory, calm hosts get it back (services/memory.py); a failing round
is logged and retried at the next interval, never ending the loop.

The round is a clock-core `Loop` in the ACT phase, run by a BackgroundLoop
(poolvisor/clock/background.py), only while `is_leader()`: in `serve` on a `WallClock` run by a
thread of its own; given a `SimClock` instead (a digital twin, tests), the caller runs the clock
and the very same rounds happen in simulated time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from poolvisor.clock import Clock, LoopStatus, Phase
from poolvisor.clock.background import BackgroundLoop
from poolvisor.drivers.protocols import Capability, supports

DEFAULT_INTERVAL_S = 10.0
log = logging.getLogger("poolvisor.memory")


class BalloonLoop:
    def __init__(self, services: Any, interval: float = DEFAULT_INTERVAL_S, *,
                 clock: Clock | None = None, is_leader: Callable[[], bool] | None = None) -> None:
        self.services = services
        self.interval = float(interval)
        self.rounds = 0
        self.runner = BackgroundLoop("balloon", lambda _t: self.round(), self.interval, clock=clock,
                                     is_leader=is_leader, what="balloon round", log=log,
                                     priority=Phase.ACT, delay_first=True)
        self.clock, self.loop = self.runner.clock, self.runner.loop

    @staticmethod
    def wanted(services: Any) -> bool:
        """Only with a driver that can balloon."""
        return services is not None and supports(services.driver, Capability.BALLOON)

    def start(self) -> None:
        """The first round one interval from now (the API has just started), then every interval."""
        self.runner.start()

    def round(self) -> int:
        """One reclaim round over every up host; the number of hosts whose balloons changed."""
        changed = sum(1 for r in self.services.memory.reclaim() if r.changes)
        self.rounds += 1
        return changed

    def status(self) -> LoopStatus:
        return self.runner.status()

    def stop(self) -> None:
        self.runner.stop()
