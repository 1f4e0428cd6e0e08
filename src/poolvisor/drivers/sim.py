"""The `sim` driver: in-process simulated hosts with operation durations and fault injection.

Each simulated host keeps the workloads it runs and their state. `fail(host)` kills a host (no
heartbeat, its workloads gone) until `revive(host)`; `inject(op, host=None, times=1)` makes the
next matching operations raise DriverError. Durations (seconds per operation, default 0) let
tests and demos see work in progress. Everything is guarded by one lock, so it is thread-safe.
Operations on a live host are idempotent and adopt workloads they did not create: the sim's
world is reconstructed from the database after a restart or in another process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from poolvisor.drivers.balloon import SimBalloon
from poolvisor.drivers.base import DriverError, DriverWorkload, HostStats

OPERATIONS = ("create", "start", "stop", "suspend", "resume", "delete", "migrate", "fence")
_AFTER = {"create": "running", "start": "running", "stop": "stopped", "suspend": "suspended",
          "resume": "running"}


@dataclass
class SimHost:
    name: str
    capacity: dict[str, float]
    alive: bool = True
    fenced: bool = False
    workloads: dict[str, tuple[DriverWorkload, str]] = field(default_factory=dict)


@dataclass
class _Fault:
    op: str
    host: str | None
    remaining: int


class SimDriver:
    name = "sim"

    def __init__(self, durations: Mapping[str, float] | None = None):
        self.durations = {op: 0.0 for op in OPERATIONS}
        for op, d in (durations or {}).items():
            if op not in self.durations:
                raise ValueError(f"unknown sim operation {op!r}; known: {', '.join(OPERATIONS)}")
            self.durations[op] = float(d)
        self.hosts: dict[str, SimHost] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.balloon = SimBalloon()  # memory balloons (drivers/balloon.py)

    # ---- fault injection ---------------------------------------------------------------------
    def fail(self, host: str) -> None:
        """The host dies: no heartbeat, every workload on it is gone."""
        with self._lock:
            h = self._host(host)
            h.alive = False
            h.workloads.clear()

    def revive(self, host: str) -> None:
        with self._lock:
            h = self._host(host)
            h.alive, h.fenced = True, False

    def inject(self, op: str, host: str | None = None, times: int = 1) -> None:
        """Make the next `times` operations `op` (on `host`, or any host) fail with DriverError."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown sim operation {op!r}")
        with self._lock:
            self._faults.append(_Fault(op, host, times))

    # ---- protocol ----------------------------------------------------------------------------
    def add_host(self, host: str, capacity: Mapping[str, float]) -> None:
        with self._lock:
            if host not in self.hosts:
                self.hosts[host] = SimHost(host, dict(capacity))

    def remove_host(self, host: str) -> None:
        with self._lock:
            self.hosts.pop(host, None)

    def create(self, host: str, workload: DriverWorkload) -> None:
        self._op("create", host, workload)

    def start(self, host: str, workload: DriverWorkload) -> None:
        self._op("start", host, workload)

    def stop(self, host: str, workload: DriverWorkload) -> None:
        self._op("stop", host, workload)

    def suspend(self, host: str, workload: DriverWorkload) -> None:
        self._op("suspend", host, workload)

    def resume(self, host: str, workload: DriverWorkload) -> None:
        self._op("resume", host, workload)

    def delete(self, host: str, workload: DriverWorkload) -> None:
        self._sleep("delete")
        with self._lock:
            self._check_fault("delete", host)
            h = self.hosts.get(host)
            if h is not None:  # deleting from a dead or unknown host is a no-op: it is gone anyway
                h.workloads.pop(workload.key, None)

    def migrate(self, workload: DriverWorkload, src: str, dst: str, live: bool = True) -> None:
        self._sleep("migrate")
        with self._lock:
            self._check_fault("migrate", dst)
            s, d = self._live(src), self._live(dst)
            _wl, st = s.workloads.pop(workload.key, (workload, "running"))
            d.workloads[workload.key] = (workload, st)

    def exists(self, host: str, workload: DriverWorkload) -> bool:
        with self._lock:
            h = self.hosts.get(host)
            return h is not None and h.alive and not h.fenced and workload.key in h.workloads

    def stats(self, host: str) -> HostStats:
        with self._lock:
            h = self._host(host)
            used: dict[str, float] = {}
            for wl, st in h.workloads.values():
                if st == "running":
                    for r, v in wl.demand.items():
                        used[r] = used.get(r, 0.0) + float(v)
            states = {k: st for k, (_w, st) in h.workloads.items()}
            return HostStats(host, h.alive, len(h.workloads), used, states)

    def heartbeat(self, host: str) -> bool:
        with self._lock:
            h = self.hosts.get(host)
            return h is not None and h.alive and not h.fenced

    def fence(self, host: str) -> None:
        """Power the host off (STONITH): its workloads stop for good."""
        self._sleep("fence")
        with self._lock:
            self._check_fault("fence", host)
            h = self._host(host)
            h.fenced = True
            h.workloads.clear()

    # ---- internals ---------------------------------------------------------------------------
    def _sleep(self, op: str) -> None:
        d = self.durations[op]
        if d > 0:
            time.sleep(d)

    def _op(self, op: str, host: str, workload: DriverWorkload) -> None:
        self._sleep(op)
        with self._lock:
            self._check_fault(op, host)
            h = self._live(host)
            h.workloads[workload.key] = (workload, _AFTER[op])

    def _host(self, host: str) -> SimHost:
        # The database is the authority on which hosts exist: a host this process has not seen
        # yet (created by another process, or before a restart) is adopted as a live host.
        h = self.hosts.get(host)
        if h is None:
            h = self.hosts[host] = SimHost(host, {})
        return h

    def _live(self, host: str) -> SimHost:
        h = self._host(host)
        if not h.alive or h.fenced:
            raise DriverError(f"sim host {host!r} does not respond")
        return h

    def _check_fault(self, op: str, host: str) -> None:
        for f in self._faults:
            if f.op == op and f.host in (None, host):
                f.remaining -= 1
                if f.remaining <= 0:
                    self._faults.remove(f)
                raise DriverError(f"sim: injected failure of {op} on {host!r}")
