"""The event core: one ordering rule for every simulated and live timeline.

Events sit in a binary heap keyed ``(time, priority, seq)``:

* ``time`` first, obviously;
* ``priority`` (lower first) orders what happens *at the same instant*: a controller measures
  before it plans and plans before it migrates; a simulator ticks before it completes the
  migrations that end on that tick (CloudSim's order); an online replay frees departures before
  it places arrivals. Without it, same-instant order would depend on who scheduled first;
* ``seq``, a counter taken at scheduling time, breaks the remaining ties in scheduling order, so
  a run is deterministic (the heap never compares two events' payloads, and two runs of the same
  inputs process events in exactly the same order).

Cancellation is lazy (SimPy, asyncio): a cancelled event stays in the heap and is skipped when it
reaches the top, which keeps ``cancel`` O(1); the heap is rebuilt when more than half of it is dead.

:class:`SimClock` jumps from event to event (time is whatever the next event says);
:class:`~poolvisor.clock.wall.WallClock` sleeps until the next event is due. Both share this
class's queue, scheduling, timers and ordering, so code written against a :class:`Clock` (the
controller loop) runs unchanged on simulated time (a digital twin) and on real time.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

Callback = Callable[[Any], object]

#: Default priority; lower values run first at the same instant.
NORMAL = 0


class Event:
    """A scheduled call ``fn(arg)`` at ``time``; the handle :meth:`Clock.schedule` returns."""

    __slots__ = ("time", "priority", "fn", "arg", "cancelled", "_clock")

    def __init__(self, clock: Clock, time: float, priority: int, fn: Callback, arg: Any) -> None:
        self._clock = clock
        self.time = time
        self.priority = priority
        self.fn = fn
        self.arg = arg
        self.cancelled = False

    def cancel(self) -> bool:
        """Drop the event if it has not run yet; True if this call cancelled it."""
        return self._clock.cancel(self)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        state = " cancelled" if self.cancelled else ""
        return f"<Event t={self.time!r} p={self.priority} {name}{state}>"


class Timer:
    """A periodic event (:meth:`Clock.every`): ``fn(tick_time)`` every ``interval``.

    The next time is the previous one plus ``interval``, accumulated in doubles as a naive loop
    (and CloudSim's clock) does, so a simulator driven by a timer keeps its exact instants. A tick
    that comes due while the clock is already later (a wall clock after a slow step) skips the
    missed instants instead of firing a burst of catch-up ticks.
    """

    def __init__(
        self,
        clock: Clock,
        interval: float,
        fn: Callable[[float], object],
        start: float,
        priority: int,
        count: int | None,
        until: float | None,
    ) -> None:
        if not interval > 0 or not math.isfinite(interval):
            raise ValueError(f"timer interval must be a positive finite number, not {interval!r}")
        self.clock = clock
        self.interval = float(interval)
        self.fn = fn
        self.label = label(fn)
        self.priority = priority
        self.count = count
        self.until = until
        self.ticks = 0  # ticks that ran
        self.next_at: float | None = None
        self._event: Event | None = None
        self._arm(float(start))

    def _arm(self, at: float) -> None:
        done = self.count is not None and self.ticks >= self.count
        if done or (self.until is not None and at > self.until):
            self.next_at, self._event = None, None
            return
        self.next_at = at
        self._event = self.clock.schedule(self._fire, at, at=at, priority=self.priority)

    def _fire(self, at: float) -> None:
        self.ticks += 1
        try:
            self.fn(at)
        finally:  # a tick that raised does not end the timer (the error still propagates)
            if self._event is not None:  # else cancelled from inside fn
                nxt = at + self.interval
                now = self.clock.now
                if nxt < now:  # late (only a wall clock can be): the first grid instant not past
                    nxt = at + math.ceil((now - at) / self.interval) * self.interval
                self._arm(nxt)

    @property
    def active(self) -> bool:
        return self._event is not None

    def cancel(self) -> None:
        """No more ticks (safe from inside the tick itself)."""
        if self._event is not None:
            self._event.cancel()
        self._event, self.next_at = None, None


Entry = tuple[float, int, int, Callback, Any, "Event | None"]


class Clock:
    """The event queue and scheduling rules shared by :class:`SimClock` and ``WallClock``.

    ``now`` is the clock's current time in seconds. ``trace=True`` appends
    ``(time, priority, name)`` of every event run to :attr:`log` (the callback's ``__name__``),
    which is how tests check what order a simulator's events ran in.

    A heap entry is ``(time, priority, seq, fn, arg, handle)``; ``handle`` is the :class:`Event`
    for :meth:`schedule` (cancellable) and None for :meth:`post` (fire and forget, no object per
    event: what a replay of hundreds of thousands of arrivals uses).
    """

    #: refuse instants in the past (simulated time); a wall clock runs them as soon as it can
    strict = True

    def __init__(self, *, trace: bool = False) -> None:
        self._heap: list[Entry] = []
        self._seq = 0
        self._dead = 0  # cancelled events still in the heap
        self._stopped = False
        self.processed = 0
        self.trace = trace
        self.log: list[tuple[float, int, str]] = []

    # --- time ----------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        raise NotImplementedError

    def _here(self) -> float:
        """The instant "now" means for a new event: the current time."""
        return self.now

    # --- scheduling -----------------------------------------------------------------------------
    def schedule(
        self,
        fn: Callback,
        arg: Any = None,
        *,
        at: float | None = None,
        delay: float | None = None,
        priority: int = NORMAL,
    ) -> Event:
        """Call ``fn(arg)`` at ``at`` (absolute) or after ``delay`` (relative to ``now``); returns
        the handle that cancels it.

        At most one of ``at`` and ``delay`` (neither: now, after the events already due now). On
        a simulated clock an instant in the past is refused (it would silently run out of order);
        on a wall clock it is simply due.
        """
        if at is None:
            at = self._here() if delay is None else self.now + delay
        elif delay is not None:
            raise ValueError("give at or delay, not both")
        self._check(at)
        ev = Event(self, at, priority, fn, arg)
        self._push((at, priority, self._seq, fn, arg, ev))
        return ev

    def post(self, at: float, priority: int, fn: Callback, arg: Any = None) -> None:
        """:meth:`schedule` at ``at`` without a handle (cannot be cancelled): the cheap form for
        hot loops, same order."""
        if at < self.now or at != at:
            self._check(at)
        self._push((at, priority, self._seq, fn, arg, None))

    def _check(self, at: float) -> None:
        if at != at or (self.strict and at < self.now):
            raise ValueError(f"cannot schedule at {at!r}: the clock is at {self.now!r}")

    def _push(self, entry: Entry) -> None:
        heapq.heappush(self._heap, entry)
        self._seq += 1

    def every(
        self,
        interval: float,
        fn: Callable[[float], object],
        *,
        start: float | None = None,
        priority: int = NORMAL,
        count: int | None = None,
        until: float | None = None,
    ) -> Timer:
        """Call ``fn(t)`` at ``start`` (default: now + interval), then every ``interval``, at most
        ``count`` times and never after ``until``; see :class:`Timer`."""
        first = self.now + interval if start is None else start
        return Timer(self, interval, fn, first, priority, count, until)

    def cancel(self, ev: Event) -> bool:
        """Lazy deletion: mark it; the run loop drops it when it reaches the top of the heap."""
        if ev.cancelled or ev.fn is _done:
            return False
        ev.cancelled = True
        self._dead += 1
        heap = self._heap
        if self._dead > 64 and self._dead * 2 > len(heap):
            heap[:] = [e for e in heap if e[5] is None or not e[5].cancelled]  # in place: run() holds it
            heapq.heapify(heap)
            self._dead = 0
        return True

    def stop(self) -> None:
        """End the current :meth:`run` after the event being processed (or the next run before its
        first event, when called outside a run: a thread may stop a wall clock before it starts)."""
        self._stopped = True

    # --- inspection -------------------------------------------------------------------------------
    def _drop_dead(self) -> None:
        """Pop cancelled events off the top of the heap."""
        heap = self._heap
        while heap:
            ev = heap[0][5]
            if ev is None or not ev.cancelled:
                return
            heapq.heappop(heap)
            self._dead -= 1

    def peek(self) -> float:
        """Time of the next live event, inf when there is none."""
        self._drop_dead()
        return self._heap[0][0] if self._heap else math.inf

    def __len__(self) -> int:
        """Live events pending."""
        return len(self._heap) - self._dead

    # --- running ------------------------------------------------------------------------------------
    def _dispatch(self, entry: Entry) -> None:
        """Run a popped live entry."""
        t, p, _, fn, arg, ev = entry
        if ev is not None:
            ev.fn = _done  # a handle of an event that ran can no longer be cancelled
        self.processed += 1
        if self.trace:
            self.log.append((t, p, label(fn)))
        fn(arg)


def label(fn: Callable[..., object]) -> str:
    """A callback's name in :attr:`Clock.log`: the ``label`` of the timer, loop or process it is a
    method of, else its ``__name__``."""
    lab = getattr(getattr(fn, "__self__", None), "label", None)
    return lab if isinstance(lab, str) else getattr(fn, "__name__", repr(fn))


def _done(_: Any) -> None:
    """Marks an event that already ran."""


class SimClock(Clock):
    """Simulated time: ``now`` jumps to each event's time; nothing ever sleeps.

    Deterministic by construction: the order is the heap's ``(time, priority, seq)`` and time
    only moves when an event runs, so the same inputs give the same run, bit for bit.
    """

    def __init__(self, start: float = 0.0, *, trace: bool = False) -> None:
        super().__init__(trace=trace)
        self._now = float(start)

    @property
    def now(self) -> float:
        return self._now

    def post(self, at: float, priority: int, fn: Callback, arg: Any = None) -> None:
        if not at >= self._now:  # the past, or NaN
            self._check(at)
        heapq.heappush(self._heap, (at, priority, self._seq, fn, arg, None))
        self._seq += 1

    def step(self) -> bool:
        """Run the next live event (time jumps to it); False when none is left."""
        self._drop_dead()
        if not self._heap:
            return False
        entry = heapq.heappop(self._heap)
        self._now = entry[0]
        self._dispatch(entry)
        return True

    def run(self, until: float | None = None) -> int:
        """Run events in order until none is left, :meth:`stop` is called or the next event is
        later than ``until``; returns how many ran.

        ``until`` is inclusive: events *at* ``until`` run (a day that ends at 86,400 s still has
        its last tick), unlike SimPy whose ``until`` stops before them; the clock is then left at
        ``until`` (when the run was not stopped early).
        """
        heap = self._heap
        pop = heapq.heappop
        lim = math.inf if until is None else until
        trace = self.trace
        n = 0
        try:
            while heap and not self._stopped:
                t, p, _, fn, arg, ev = heap[0]
                if t > lim:
                    break
                pop(heap)
                if ev is not None:
                    if ev.cancelled:
                        self._dead -= 1
                        continue
                    ev.fn = _done
                self._now = t
                n += 1
                if trace:
                    self.log.append((t, p, label(fn)))
                fn(arg)
        finally:
            self.processed += n
        if self._stopped:
            self._stopped = False
        elif until is not None and until > self._now:
            self._now = float(until)
        return n
