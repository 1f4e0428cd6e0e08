"""The outcome of one simulation run: scalar metrics plus per-step time series.

Shared by the engine, the CLI, sweeps and reports, so it only holds plain numbers and
numpy arrays (no engine objects) and serializes to JSON-safe dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Metric keys every run provides (fractions, never percents).
METRIC_KEYS: tuple[str, ...] = (
    "energy_kwh",
    "migrations",
    "slatah",
    "pdm",
    "slav",
    "esv",
    "sla_overall",
    "sla_average",
    "host_shutdowns",
    "hosts",
    "vms",
    "wall_s",
)


@dataclass
class SimResult:
    """Metrics and time series of one run.

    ``metrics`` holds at least METRIC_KEYS. The time series are aligned on ``time_s`` (one
    entry per scheduling epoch): ``active_hosts`` (hosts with non-zero load), ``power_w``
    (total power at that instant), ``sla_violation`` (fraction of active hosts whose
    requested MIPS exceeded the allocation) and ``migrations`` (migrations started at that epoch).
    """

    policy: str
    param: float | None
    compat: str | None
    trace: str
    seed: int = 0
    metrics: dict[str, float | int] = field(default_factory=dict)
    time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    active_hosts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sla_violation: np.ndarray = field(default_factory=lambda: np.zeros(0))
    migrations: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rules: dict[str, int] = field(default_factory=dict)
    #: optional step-level record (initial placement, migrations, energy frames); not serialized
    debug: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """Policy label as used in tables, e.g. ``thr-mmt-0.8``."""
        return self.policy if self.param is None else f"{self.policy}-{self.param:g}"

    def to_dict(self, series: bool = True) -> dict[str, Any]:
        """JSON-safe dict; ``series=False`` drops the time series (for one-line summaries)."""
        out: dict[str, Any] = {
            "policy": self.policy,
            "param": self.param,
            "compat": self.compat,
            "trace": self.trace,
            "seed": self.seed,
            **{k: (int(v) if isinstance(v, int | np.integer) else float(v)) for k, v in self.metrics.items()},
            "rules": dict(self.rules),
        }
        if series:
            out["series"] = {
                "time_s": self.time_s.tolist(),
                "active_hosts": self.active_hosts.tolist(),
                "power_w": self.power_w.tolist(),
                "sla_violation": self.sla_violation.tolist(),
                "migrations": self.migrations.tolist(),
            }
        return out
