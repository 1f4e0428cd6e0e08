"""The periodic repair sweep of `poolvisor serve`: a background loop calling RepairService.run().

Started and stopped with the API's lifespan (api/app.py). A crashed process's transient rows are
resolved within its lease duration plus one interval; a failing sweep (database unavailable) is
reported and retried at the next interval, never ending the thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from poolvisor.clock.background import BackgroundLoop
from poolvisor.domain.errors import InvalidInputError

DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 3600.0
log = logging.getLogger("poolvisor.repair")


class Repairer(Protocol):
    def run(self) -> list[str]: ...


def check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float) \
            or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        raise InvalidInputError(f"repair interval must be {MIN_INTERVAL_S:g}..{MAX_INTERVAL_S:g} seconds")
    return float(interval)


class RepairSweeper:
    """Run `repair.run()` every `interval` seconds until stop(), on the BackgroundLoop runner every
    periodic job of `serve` uses (its own daemon thread and wall clock; not leader-gated: every
    process repairs what crashed processes left). Repaired rows go to `report`; a failing sweep is
    logged and retried at the next interval, never ending the loop."""

    def __init__(self, repair: Repairer, interval: float = DEFAULT_INTERVAL_S,
                 report: Callable[[str], None] | None = None) -> None:
        self.repair = repair
        self.interval = check_interval(interval)
        self.report = report or (lambda line: log.warning("%s", line))
        self.sweeps = 0
        self._loop = BackgroundLoop("repair", lambda _t: self.sweep_once(), self.interval,
                                    what="repair sweep", log=log, delay_first=True)

    def start(self) -> None:
        self._loop.start()

    def sweep_once(self) -> list[str]:
        done = self.repair.run()
        self.sweeps += 1
        for line in done:
            self.report(f"repaired: {line}")
        return done

    def stop(self) -> None:
        self._loop.stop()
