"""What the controller is written with: a periodic :class:`Loop` and sequential :class:`Process`.

Both only talk to a :class:`~poolvisor.clock.core.Clock`, so the reconcile loop that runs on a
``WallClock`` inside ``poolvisor serve`` runs unchanged on a ``SimClock`` in a digital twin: same
steps, same order, only time is simulated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from poolvisor.clock.core import NORMAL, Clock, Event, Timer


class Phase(IntEnum):
    """Priorities for a controller's work at one instant: it measures before it plans and plans
    before it acts, so a plan never reads a half-updated state and an action never races the
    measurement that justified it (lower runs first)."""

    MEASURE = 10
    PLAN = 20
    ACT = 30
    RECORD = 40


@dataclass(frozen=True)
class LoopStatus:
    """What ``poolvisor controller status`` shows about a loop."""

    name: str
    interval_s: float
    running: bool
    paused: bool
    steps: int
    skipped: int
    errors: int
    last_error: str | None
    last_at: float | None
    last_duration_s: float | None
    next_at: float | None


class Loop:
    """Call ``step(t)`` every ``interval`` seconds of ``clock`` (the first at ``start``, default
    now), e.g. the controller's reconcile.

    ``pause`` keeps the ticks but skips the step (the phase of the grid is kept for ``resume``);
    ``trigger`` asks for one extra step as soon as possible (from any thread, coalesced while one
    is pending). A step that raises is counted in the status and handed to ``on_error``; without
    ``on_error`` the exception propagates out of the clock's ``run`` (fail loudly by default).
    """

    def __init__(
        self,
        clock: Clock,
        step: Callable[[float], object],
        interval: float,
        *,
        priority: int = NORMAL,
        name: str = "loop",
        on_error: Callable[[Exception], object] | None = None,
    ) -> None:
        self.clock = clock
        self.step = step
        self.interval = float(interval)
        self.priority = priority
        self.name = name
        self.label = name
        self.on_error = on_error
        self.paused = False
        self.steps = 0
        self.skipped = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_at: float | None = None
        self.last_duration_s: float | None = None
        self._timer: Timer | None = None
        self._pending: Event | None = None

    def start(self, at: float | None = None) -> Loop:
        if self._timer is not None:
            raise RuntimeError(f"loop {self.name!r} is already running")
        first = self.clock.now if at is None else at
        self._timer = self.clock.every(self.interval, self._tick, start=first, priority=self.priority)
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def trigger(self) -> None:
        """One extra step now (after the events already due), unless one is already pending."""
        if self._pending is None:
            self._pending = self.clock.schedule(self._triggered, priority=self.priority)

    @property
    def running(self) -> bool:
        return self._timer is not None

    def status(self) -> LoopStatus:
        return LoopStatus(
            name=self.name,
            interval_s=self.interval,
            running=self.running,
            paused=self.paused,
            steps=self.steps,
            skipped=self.skipped,
            errors=self.errors,
            last_error=self.last_error,
            last_at=self.last_at,
            last_duration_s=self.last_duration_s,
            next_at=self._timer.next_at if self._timer is not None else None,
        )

    def _triggered(self, _: Any) -> None:
        self._pending = None
        self._tick(self.clock.now)

    def _tick(self, t: float) -> None:
        if self.paused:
            self.skipped += 1
            return
        w0 = time.perf_counter()
        self.last_at = t
        try:
            self.step(t)
        except Exception as e:
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
            if self.on_error is None:
                raise
            self.on_error(e)
        finally:
            self.steps += 1
            self.last_duration_s = time.perf_counter() - w0


ProcessBody = Generator[float, float, Any]


class Process:
    """A sequential activity on a clock, written as a generator (SimPy's process): ``yield d``
    waits ``d`` seconds of the clock and resumes with the clock's time, e.g. a host suspected at
    t, fenced after a grace period, its workloads restarted after the fence::

        def recover(host):
            yield grace_s            # still silent?
            fence(host)
            t = yield 0.0            # after everything else due now
            restart_workloads(host, t)

    ``value`` is the generator's return value once ``alive`` is False. An exception in the body
    propagates out of the clock's ``run``.
    """

    def __init__(
        self, clock: Clock, body: ProcessBody, *, priority: int = NORMAL, at: float | None = None
    ) -> None:
        self.clock = clock
        self.body = body
        self.label = getattr(body, "__name__", "process")
        self.priority = priority
        self.alive = True
        self.value: Any = None
        self._started = False
        self._event: Event | None = clock.schedule(self._resume, at=at, priority=priority)

    def _resume(self, _: Any) -> None:
        self._event = None
        try:
            if self._started:
                delay = self.body.send(self.clock.now)
            else:
                self._started = True
                delay = next(self.body)
        except StopIteration as stop:
            self.alive = False
            self.value = stop.value
            return
        except BaseException:
            self.alive = False
            raise
        d = float(delay)
        if not d >= 0:
            self.alive = False
            self.body.close()
            raise ValueError(f"a process yields a delay >= 0, not {delay!r}")
        self._event = self.clock.schedule(self._resume, delay=d, priority=self.priority)

    def cancel(self) -> None:
        """Stop the process where it waits (its generator is closed: ``finally`` blocks run)."""
        if self._event is not None:
            self._event.cancel()
            self._event = None
        if self.alive:
            self.alive = False
            self.body.close()
