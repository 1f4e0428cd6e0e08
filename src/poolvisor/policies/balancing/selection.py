"""VM selection: which VM leaves an overloaded host (MMT, MU, MC, RS).

Each selector sees the host's VMs in the host's list order and returns a position in that list
(ties go to the earliest VM, as CloudSim's strict comparisons do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import InvalidInputError

SELECTORS = ("mmt", "mu", "mc", "rs")


@dataclass
class Selector:
    """``kind``: mmt (smallest RAM = shortest migration), mu (lowest CPU utilization),
    mc (highest multiple correlation of its history with the other VMs'), rs (random, seeded)."""

    kind: str = "mmt"
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SELECTORS:
            raise InvalidInputError(
                f"unknown VM selection policy {self.kind!r} (use one of {', '.join(SELECTORS)})"
            )
        self._rng = np.random.default_rng(self.seed)

    def pick(self, ram: np.ndarray, util: np.ndarray, hist: np.ndarray, hlen: np.ndarray) -> int:
        """Position of the VM to migrate among ``len(ram)`` candidates (all arrays in list order)."""
        n = len(ram)
        if n == 1:
            return 0
        if self.kind == "mmt":
            return int(np.argmin(ram))
        if self.kind == "mu":
            return int(np.argmin(util))
        if self.kind == "rs":
            return int(self._rng.integers(n))
        return max_correlation(hist, hlen, ram)


def max_correlation(hist: np.ndarray, hlen: np.ndarray, ram: np.ndarray) -> int:
    """VM whose history is best explained (highest R^2) by a linear model of the others' histories.

    Uses the common history length; falls back to MMT when there are too few samples to regress.
    """
    n = hist.shape[0]
    m = int(hlen.min())
    if m < n + 2:
        return int(np.argmin(ram))
    x = hist[:, :m].T  # (m, n)
    best, best_r2 = 0, -np.inf
    for i in range(n):
        y = x[:, i]
        a = np.column_stack([np.ones(m), np.delete(x, i, axis=1)])
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float(((y - a @ coef) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
        if r2 > best_r2:
            best, best_r2 = i, r2
    return best
