"""The controller's periodic reconcile round inside `poolvisor serve` (ControllerService.reconcile).

A clock-core `Loop` in the ACT phase, as BalloonLoop and AlertLoop: in `serve` on a `WallClock`
run by a thread of its own; given a `SimClock` (tests, a digital twin), the caller runs the clock
and the same rounds happen in simulated time (the round is stamped with the clock's time).

Two gates, checked at every tick: `is_leader()` (the leader election hook: only the process that
holds the lease reconciles; by default always True) and the persisted pause flag (`poolvisor
controller pause`: every replica reads it from the store). A failing round is logged and retried
at the next tick, never ending the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from poolvisor.clock import Clock, Loop, LoopStatus, Phase, WallClock
from poolvisor.domain.errors import PoolvisorError
from poolvisor.services.controller import RoundReport

DEFAULT_INTERVAL_S = 20.0
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 86400.0
log = logging.getLogger("poolvisor.controller")


class ControllerLoop:
    def __init__(
        self,
        services: Any,
        interval: float = DEFAULT_INTERVAL_S,
        *,
        clock: Clock | None = None,
        is_leader: Callable[[], bool] | None = None,
    ) -> None:
        self.services = services
        self.interval = float(interval)
        self.is_leader = is_leader or (lambda: True)
        self.rounds = 0
        self.skipped: dict[str, int] = {"not leader": 0, "paused": 0}
        self.last: RoundReport | None = None
        self._wall: WallClock | None = None
        if clock is None:
            clock = self._wall = WallClock()
        self.clock: Clock = clock
        self.loop = Loop(
            self.clock,
            self.round,
            self.interval,
            priority=Phase.ACT,
            name="controller",
            on_error=self._failed,
        )
        self._thread: threading.Thread | None = None

    def start(self, at: float | None = None) -> None:
        """The first round one interval from now (default), then every interval."""
        if self.loop.running:
            return
        self.loop.start(at=self.clock.now + self.interval if at is None else at)
        if self._wall is not None:
            self._thread = threading.Thread(target=self._wall.run, name="poolvisor-controller", daemon=True)
            self._thread.start()

    def round(self, t: float) -> RoundReport | None:
        """One reconcile at clock time `t`, unless this process is not the leader or it is paused."""
        if not self.is_leader():
            self.skipped["not leader"] += 1
            return None
        ctl = self.services.controller
        if ctl.paused():
            self.skipped["paused"] += 1
            return None
        self.last = ctl.reconcile(t)
        self.rounds += 1
        return self.last

    def status(self) -> LoopStatus:
        return self.loop.status()

    def _failed(self, e: Exception) -> None:
        if isinstance(e, PoolvisorError):
            log.warning("controller round failed (retrying in %g s): %s", self.interval, e.message)
        else:  # a bug must not silently end the controller
            log.error("controller round failed", exc_info=e)

    def stop(self) -> None:
        self.loop.stop()
        if self._wall is not None:
            self._wall.stop()
            if self._thread is not None:
                self._thread.join(timeout=30)
                self._thread = None
