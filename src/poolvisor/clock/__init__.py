"""One clock and event core for both simulators and the live controller (docs/simulator.md).

``SimClock`` jumps from event to event, ``WallClock`` sleeps until the next one is due; both order
events by ``(time, priority, seq)``. ``Loop`` (a periodic step) and ``Process`` (a generator that
yields delays) run on either, which is what lets the controller run in a digital twin unchanged.
"""

from poolvisor.clock.core import NORMAL, Clock, Event, SimClock, Timer
from poolvisor.clock.process import Loop, LoopStatus, Phase, Process
from poolvisor.clock.wall import WallClock

__all__ = [
    "NORMAL",
    "Clock",
    "Event",
    "Loop",
    "LoopStatus",
    "Phase",
    "Process",
    "SimClock",
    "Timer",
    "WallClock",
]
