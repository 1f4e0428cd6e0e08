"""One periodic background job of `poolvisor serve` (balloon, alerts, HA, controller, queue, backups).

A clock-core `Loop` running `step(t)` every `interval` s: on a `WallClock` driven by a daemon
thread of its own, or on a clock the caller runs (a `SimClock` in tests and the digital twin:
the very same steps happen in simulated time). Shared here so every such job gates on leadership,
logs failures and starts/stops the same way.

`is_leader` (leader election, services/leader.py) is asked at every tick: while it says no, the
step is skipped and counted in `not_leader`. A failing step never ends the loop: an expected
`PoolvisorError` (database away, driver down) is a warning, anything else (a bug) an error with
its traceback; both are retried at the next tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from poolvisor.clock.core import NORMAL, Clock
from poolvisor.clock.process import Loop, LoopStatus
from poolvisor.clock.wall import WallClock
from poolvisor.domain.errors import PoolvisorError


class BackgroundLoop:
    def __init__(
        self,
        name: str,
        step: Callable[[float], object],
        interval: float,
        *,
        clock: Clock | None = None,
        is_leader: Callable[[], bool] | None = None,
        what: str | None = None,
        log: logging.Logger | None = None,
        priority: int = NORMAL,
        delay_first: bool = False,
    ) -> None:
        """`what` names a step in the log ("balloon round"); `delay_first`: the first step one
        interval after `start` (a server starting up has other work first), else at once."""
        self.name = name
        self.step = step
        self.what = what or f"{name} step"
        self.log = log or logging.getLogger(f"poolvisor.{name}")
        self.is_leader = is_leader or (lambda: True)
        self.delay_first = delay_first
        self.not_leader = 0  # ticks skipped because another process leads
        self._wall: WallClock | None = None  # ours, run by our thread (None: the caller runs `clock`)
        if clock is None:
            clock = self._wall = WallClock()
        self.clock: Clock = clock
        self.loop = Loop(clock, self._tick, interval, priority=priority, name=name, on_error=self._failed)
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return self.loop.interval

    @property
    def running(self) -> bool:
        return self.loop.running

    def _tick(self, t: float) -> None:
        if not self.is_leader():
            self.not_leader += 1
            return
        self.step(t)

    def _failed(self, e: Exception) -> None:
        if isinstance(e, PoolvisorError):
            self.log.warning("%s failed (retrying in %g s): %s", self.what, self.interval, e.message)
        else:  # a bug must not silently end the loop
            self.log.error("%s failed", self.what, exc_info=e)

    def start(self, at: float | None = None) -> None:
        """Schedule the steps (from `at`, else now or one interval from now) and, on our own
        WallClock, start the thread that runs it. Starting a running loop does nothing."""
        if self.loop.running:
            return
        if at is None:
            at = self.clock.now + (self.interval if self.delay_first else 0.0)
        self.loop.start(at=at)
        if self._wall is not None:
            self._thread = threading.Thread(target=self._wall.run, name=f"poolvisor-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Cancel the steps; on our own WallClock also end and join its thread (idempotent).
        A caller's clock is left running: it may drive other loops."""
        self.loop.stop()
        if self._wall is not None and self._thread is not None:  # (a second stop must not arm the
            self._wall.stop()  # clock's stop flag for the next run: it would end at once)
            self._thread.join(timeout=30)
            self._thread = None

    def status(self) -> LoopStatus:
        return self.loop.status()
