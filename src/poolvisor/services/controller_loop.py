"""The controller's periodic reconcile round inside `poolvisor serve` (ControllerService.reconcile).

A clock-core `Loop` in the ACT phase, run by a BackgroundLoop (poolvisor/clock/background.py):
in `serve` on a `WallClock` run by a thread of its own; given a `SimClock` (tests, a digital
twin), the caller runs the clock and the same rounds happen in simulated time (the round is
stamped with the clock's time).

Two gates, checked at every tick: `is_leader()` (the leader election hook: only the process that
holds the lease reconciles; by default always True) and the persisted pause flag (`poolvisor
controller pause`: every replica reads it from the store). A failing round is logged and retried
at the next tick, never ending the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from poolvisor.clock import Clock, LoopStatus, Phase
from poolvisor.clock.background import BackgroundLoop
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
        self.rounds = 0
        self.paused_rounds = 0
        self.last: RoundReport | None = None
        self.runner = BackgroundLoop("controller", self.round, self.interval, clock=clock,
                                     is_leader=is_leader, what="controller round", log=log,
                                     priority=Phase.ACT, delay_first=True)
        self.clock, self.loop = self.runner.clock, self.runner.loop

    @property
    def skipped(self) -> dict[str, int]:
        """Ticks that did not reconcile, by reason."""
        return {"not leader": self.runner.not_leader, "paused": self.paused_rounds}

    def start(self, at: float | None = None) -> None:
        """The first round one interval from now (default), then every interval."""
        self.runner.start(at)

    def round(self, t: float) -> RoundReport | None:
        """One reconcile at clock time `t` (the leader's loop only), unless it is paused."""
        ctl = self.services.controller
        if ctl.paused():
            self.paused_rounds += 1
            return None
        self.last = ctl.reconcile(t)
        self.rounds += 1
        return self.last

    def status(self) -> LoopStatus:
        return self.runner.status()

    def stop(self) -> None:
        self.runner.stop()
