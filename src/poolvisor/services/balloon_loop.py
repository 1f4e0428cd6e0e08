"""The periodic balloon round of `poolvisor serve`: MemoryService.reclaim() every `interval` s.

Started with the API's lifespan (api/app.py) when the driver has a memory balloon. Hosts under
pressure give back unused memory, calm hosts get it back (services/memory.py); a failing round
is logged and retried at the next interval, never ending the thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from poolvisor.domain.errors import PoolvisorError

DEFAULT_INTERVAL_S = 10.0
log = logging.getLogger("poolvisor.memory")


class BalloonLoop:
    def __init__(self, services: Any, interval: float = DEFAULT_INTERVAL_S) -> None:
        self.services = services
        self.interval = float(interval)
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def wanted(services: Any) -> bool:
        """Only with a driver that can balloon."""
        return services is not None and getattr(services.driver, "balloon", None) is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="poolvisor-balloon", daemon=True)
            self._thread.start()

    def round(self) -> int:
        """One reclaim round over every up host; the number of hosts whose balloons changed."""
        changed = sum(1 for r in self.services.memory.reclaim() if r.changes)
        self.rounds += 1
        return changed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.round()
            except PoolvisorError as e:
                log.warning("balloon round failed (retrying in %g s): %s", self.interval, e.message)
            except Exception:  # a bug must not silently end reclaim
                log.exception("balloon round failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
