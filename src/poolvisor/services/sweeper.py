"""The periodic repair sweep of `poolvisor serve`: a background thread calling RepairService.run().

Started and stopped with the API's lifespan (api/app.py). A crashed process's transient rows are
resolved within its lease duration plus one interval; a failing sweep (database unavailable) is
reported and retried at the next interval, never ending the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from poolvisor.domain.errors import InvalidInputError, PoolvisorError

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
    """Run `repair.run()` every `interval` seconds in a daemon thread until stop()."""

    def __init__(self, repair: Repairer, interval: float = DEFAULT_INTERVAL_S,
                 report: Callable[[str], None] | None = None) -> None:
        self.repair = repair
        self.interval = check_interval(interval)
        self.report = report or (lambda line: log.warning("%s", line))
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="poolvisor-repair-sweep", daemon=True)
            self._thread.start()

    def sweep_once(self) -> list[str]:
        done = self.repair.run()
        self.sweeps += 1
        for line in done:
            self.report(f"repaired: {line}")
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep_once()
            except PoolvisorError as e:
                self.report(f"repair sweep failed (retrying in {self.interval:g} s): {e.message}")
            except Exception:  # a bug must not silently end continuous repair
                log.exception("repair sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
