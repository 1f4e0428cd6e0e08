"""The sim driver's model of the memory balloon capability (`Balloon` in drivers/protocols.py).

A driver that can balloon declares `Capability.BALLOON`: `guest_memory(host, workload)` (the
guest's memory as the hypervisor sees it: balloon size, working set, last activity) and
`set_memory(host, workload, mib)` (resize the balloon: the memory the guest keeps). libvirt does
this with virDomainSetMemory and the balloon's memory statistics; the sim driver models it here:
a guest's working set is what the test or demo says it is (`set_working_set`), its balloon starts
at its memory demand, and it is active when its working set last changed. A guest cannot be
squeezed below its working set: the model clamps the balloon there, as a guest OS would refuse
to free pages it uses.
"""

from __future__ import annotations

import threading
import time

from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.protocols import GuestMemory

MEMORY = "memory_mib"


class SimBalloon:
    """The sim driver's balloons (thread-safe); state per workload key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size: dict[str, float] = {}
        self._ws: dict[str, tuple[float, float]] = {}

    def set_working_set(self, key: str, mib: float, at: float | None = None) -> None:
        """The guest now uses `mib` (a test or demo hook: what a guest agent would report)."""
        if mib < 0:
            raise ValueError("working set must be >= 0")
        with self._lock:
            self._ws[key] = (float(mib), time.time() if at is None else at)

    def guest(self, host: str, workload: DriverWorkload) -> GuestMemory:
        demand = float(workload.demand.get(MEMORY, 0.0))
        with self._lock:
            ws, t = self._ws.get(workload.key, (demand, 0.0))
            return GuestMemory(self._size.get(workload.key, demand), min(ws, demand), t)

    def set(self, host: str, workload: DriverWorkload, mib: float) -> float:
        """Resize the balloon; returns the size reached (never below the working set, nor above demand)."""
        demand = float(workload.demand.get(MEMORY, 0.0))
        with self._lock:
            ws = min(self._ws.get(workload.key, (demand, 0.0))[0], demand)
            size = min(demand, max(float(mib), ws))
            self._size[workload.key] = size
            return size

    def host_use(self, keys: list[tuple[str, float]]) -> float:
        """Memory the host backs for these (key, demand) guests: the sum of their balloons."""
        with self._lock:
            return sum(self._size.get(k, d) for k, d in keys)
