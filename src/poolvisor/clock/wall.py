"""Real time behind the same interface as :class:`~poolvisor.clock.core.SimClock`.

The live controller runs on a :class:`WallClock`; a digital twin runs the very same controller on
a ``SimClock``. The queue, the ``(time, priority, seq)`` order, timers and cancellation are the
shared :class:`~poolvisor.clock.core.Clock`'s; only waiting differs: the run loop sleeps on a
condition variable until the next event is due, and wakes early when another thread schedules an
event (an API call asking for a reconcile now) or calls :meth:`WallClock.notify` or ``stop``.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from typing import Any

from poolvisor.clock.core import NORMAL, Callback, Clock, Entry, Event


class WallClock(Clock):
    """Seconds on the wall: ``now`` is ``origin`` (default: ``time.time()`` at creation) plus the
    monotonic time elapsed since, so it reads like a Unix time yet never goes backwards.

    Thread-safe: any thread may schedule, cancel, notify or stop; callbacks run on the thread that
    called :meth:`run` (or :meth:`step`), one at a time, without the lock held, so a callback may
    schedule. An event whose instant has passed is due at once (``strict`` is off).
    """

    strict = False

    def __init__(self, *, origin: float | None = None, trace: bool = False) -> None:
        super().__init__(trace=trace)
        self._mono0 = time.monotonic()
        self._origin = time.time() if origin is None else float(origin)
        self._cond = threading.Condition()
        self._instant: float | None = None  # time of the event being run

    @property
    def now(self) -> float:
        return self._origin + (time.monotonic() - self._mono0)

    def _here(self) -> float:
        """Inside a callback, "now" is the instant of the event being run, not the wall reading a
        few microseconds later: what a step schedules for now then orders by priority against
        the other work of that instant (measure, plan, act), exactly as on a ``SimClock``."""
        t = self._instant
        return self.now if t is None else t

    def _dispatch(self, entry: Entry) -> None:
        self._instant = entry[0]
        try:
            super()._dispatch(entry)
        finally:
            self._instant = None

    def schedule(
        self,
        fn: Callback,
        arg: Any = None,
        *,
        at: float | None = None,
        delay: float | None = None,
        priority: int = NORMAL,
    ) -> Event:
        with self._cond:
            ev = super().schedule(fn, arg, at=at, delay=delay, priority=priority)
            self._cond.notify_all()  # the run loop may be sleeping past this event's time
        return ev

    def post(self, at: float, priority: int, fn: Callback, arg: Any = None) -> None:
        with self._cond:
            super().post(at, priority, fn, arg)
            self._cond.notify_all()

    def cancel(self, ev: Event) -> bool:
        with self._cond:
            return super().cancel(ev)

    def peek(self) -> float:
        with self._cond:
            return super().peek()

    def stop(self) -> None:
        with self._cond:
            super().stop()
            self._cond.notify_all()

    def notify(self) -> None:
        """Wake the run loop so it looks at the queue again now."""
        with self._cond:
            self._cond.notify_all()

    def _next(self, until: float | None, wait_when_empty: bool) -> Entry | None:
        """Block until an event is due and pop it; None when stopped, past ``until``, or (with
        ``wait_when_empty`` off) when the queue is empty."""
        heap = self._heap
        with self._cond:
            while True:
                if self._stopped:
                    self._stopped = False
                    return None
                self._drop_dead()
                now = self.now
                if heap:
                    t = heap[0][0]
                    if t <= now and (until is None or t <= until):
                        return heapq.heappop(heap)
                elif not wait_when_empty:
                    return None
                if until is not None and now >= until:
                    return None
                wake = heap[0][0] if heap else math.inf
                if until is not None:
                    wake = min(wake, until)
                self._cond.wait(None if wake == math.inf else wake - now)

    def step(self) -> bool:
        """Wait for the next live event and run it; False when the queue is empty (or stopped)."""
        item = self._next(None, wait_when_empty=False)
        if item is None:
            return False
        self._dispatch(item)
        return True

    def run(self, until: float | None = None) -> int:
        """Run events as they come due until :meth:`stop` or, with ``until``, until that wall time
        (events at ``until`` included); returns how many ran.

        Unlike a ``SimClock``, an empty queue does not end the run: another thread may schedule.
        """
        n0 = self.processed
        while True:
            item = self._next(until, wait_when_empty=True)
            if item is None:
                return self.processed - n0
            self._dispatch(item)
