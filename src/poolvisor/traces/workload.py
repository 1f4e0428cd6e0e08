"""The columnar form every trace reader produces for the online simulator.

One row per job (pod, VM, task): arrival and departure time in seconds (``inf`` = still running
when the trace ends), a demand vector over named scalar resources, and an optional device part
for accelerators that are allocated per device (``gpu_count`` devices with ``gpu_milli`` each, in
thousandths of one device). No Python object per job: slicing returns views/copies of arrays.
Optionally, who asked (``project`` codes into ``project_names``) and the priority class rank
(policies/preemption.py, spot 0 .. system 4; normal when the trace has none), which the online
simulator's queue serves by (policies/queueing.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.preemption import DEFAULT_CLASS, class_rank

NORMAL_RANK = class_rank(DEFAULT_CLASS)


@dataclass(frozen=True)
class Workload:
    name: str
    resources: tuple[str, ...]
    arrival: np.ndarray  # (n,) float64 seconds, non-decreasing
    departure: np.ndarray  # (n,) float64 seconds, >= arrival; inf = never leaves
    demand: np.ndarray  # (n, R) float64
    gpu_count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n,)
    gpu_milli: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n,)
    kind: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n,) code
    kind_names: tuple[str, ...] = ()
    project: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n,) code
    project_names: tuple[str, ...] = ()
    rank: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (n,) class rank

    def __post_init__(self) -> None:
        n = self.arrival.size
        if self.project.size == 0 and n:
            object.__setattr__(self, "project", np.zeros(n, dtype=np.int64))
        if not self.project_names:
            object.__setattr__(self, "project_names", ("default",))
        if self.rank.size == 0 and n:
            object.__setattr__(self, "rank", np.full(n, NORMAL_RANK, dtype=np.int64))
        if self.gpu_count.size == 0 and n:
            object.__setattr__(self, "gpu_count", np.zeros(n, dtype=np.int64))
        if self.gpu_milli.size == 0 and n:
            object.__setattr__(self, "gpu_milli", np.zeros(n, dtype=np.int64))
        if self.kind.size == 0 and n:
            object.__setattr__(self, "kind", np.zeros(n, dtype=np.int64))
        if self.demand.shape != (n, len(self.resources)):
            raise InvalidInputError(f"demand shape {self.demand.shape} != ({n}, {len(self.resources)})")
        for a in (self.departure, self.gpu_count, self.gpu_milli, self.kind, self.project, self.rank):
            if a.shape != (n,):
                raise InvalidInputError("workload columns must all have one entry per job")
        if n and np.any(np.diff(self.arrival) < 0):
            raise InvalidInputError(f"{self.name}: arrivals must be sorted by time")
        if n and np.any(self.departure < self.arrival):
            raise InvalidInputError(f"{self.name}: a departure precedes its arrival")

    def __len__(self) -> int:
        return int(self.arrival.size)

    @property
    def has_devices(self) -> bool:
        return bool(self.gpu_count.size and self.gpu_count.max() > 0)

    def take(self, idx: np.ndarray | slice) -> Workload:
        """A subset of jobs (``idx`` must keep arrival order)."""
        return replace(
            self,
            arrival=self.arrival[idx],
            departure=self.departure[idx],
            demand=self.demand[idx],
            gpu_count=self.gpu_count[idx],
            gpu_milli=self.gpu_milli[idx],
            kind=self.kind[idx],
            project=self.project[idx],
            rank=self.rank[idx],
        )

    def head(self, n: int) -> Workload:
        return self.take(slice(0, max(0, n)))

    def until(self, t: float) -> Workload:
        """Jobs arriving strictly before time ``t``."""
        return self.head(int(np.searchsorted(self.arrival, t, side="left")))
