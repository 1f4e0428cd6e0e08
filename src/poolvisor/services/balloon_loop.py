"""The periodic balloon round of `poolvisor serve`: MemoryService.reclaim() every `interval` s.

Started with the API's lifespan (api/app.py) when the driver has a memory balloon. Hosts under
pressure give back unused memory, calm hosts get it back (services/memory.py); a failing round
is logged and retried at the next interval, never ending the loop.

The round is a clock-core `Loop` (poolvisor/clock) in the ACT phase: in `serve` on a `WallClock`
run by a thread of its own; given a `SimClock` instead (a digital twin, tests), the caller runs
the clock and the very same rounds happen in simulated time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from poolvisor.clock import Clock, Loop, LoopStatus, Phase, WallClock
from poolvisor.domain.errors import PoolvisorError
from poolvisor.drivers.protocols import Capability, supports

DEFAULT_INTERVAL_S = 10.0
log = logging.getLogger("poolvisor.memory")


class BalloonLoop:
    def __init__(self, services: Any, interval: float = DEFAULT_INTERVAL_S, *,
                 clock: Clock | None = None) -> None:
        self.services = services
        self.interval = float(interval)
        self.rounds = 0
        self._wall: WallClock | None = None  # ours, run by our thread (None: the caller runs `clock`)
        if clock is None:
            clock = self._wall = WallClock()
        self.clock: Clock = clock
        self.loop = Loop(self.clock, lambda _t: self.round(), self.interval, priority=Phase.ACT,
                         name="balloon", on_error=self._failed)
        self._thread: threading.Thread | None = None

    @staticmethod
    def wanted(services: Any) -> bool:
        """Only with a driver that can balloon."""
        return services is not None and supports(services.driver, Capability.BALLOON)

    def start(self) -> None:
        """The first round one interval from now (the API has just started), then every interval."""
        if self.loop.running:
            return
        self.loop.start(at=self.clock.now + self.interval)
        if self._wall is not None:
            self._thread = threading.Thread(target=self._wall.run, name="poolvisor-balloon", daemon=True)
            self._thread.start()

    def round(self) -> int:
        """One reclaim round over every up host; the number of hosts whose balloons changed."""
        changed = sum(1 for r in self.services.memory.reclaim() if r.changes)
        self.rounds += 1
        return changed

    def status(self) -> LoopStatus:
        return self.loop.status()

    def _failed(self, e: Exception) -> None:
        if isinstance(e, PoolvisorError):
            log.warning("balloon round failed (retrying in %g s): %s", self.interval, e.message)
        else:  # a bug must not silently end reclaim
            log.error("balloon round failed", exc_info=e)

    def stop(self) -> None:
        self.loop.stop()
        if self._wall is not None:
            self._wall.stop()
            if self._thread is not None:
                self._thread.join(timeout=30)
                self._thread = None
