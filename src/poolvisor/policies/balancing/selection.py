"""VM selection: which VM leaves an overloaded host (MMT, MU, MC, RS, LP).

Each selector sees the host's VMs in the host's list order and returns a position in that list
(ties go to the earliest VM, as CloudSim's strict comparisons do).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import InvalidInputError

SELECTORS = ("mmt", "mu", "mc", "rs", "lp")


@dataclass
class Selector:
    """``kind``: mmt (smallest RAM = shortest migration), mu (lowest CPU utilization),
    mc (highest multiple correlation of its history with the other VMs'), rs (random, seeded),
    lp (the seed's migration priority M = L/P: highest load over performance, i.e. CPU
    utilization over the VM's share of the host's capacity, so the VM that uses most of what it
    holds leaves first; without the VMs' capacities, MU's opposite: the busiest)."""

    kind: str = "mmt"
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SELECTORS:
            raise InvalidInputError(
                f"unknown VM selection policy {self.kind!r} (use one of {', '.join(SELECTORS)})"
            )
        self._rng = np.random.default_rng(self.seed)

    def pick(self, ram: np.ndarray, util: np.ndarray, hist: np.ndarray, hlen: np.ndarray,
             mips: np.ndarray | None = None) -> int:
        """Position of the VM to migrate among ``len(ram)`` candidates (all arrays in list order;
        ``mips``: each VM's CPU capacity, for LP)."""
        n = len(ram)
        if n == 1:
            return 0
        if self.kind == "mmt":
            return int(np.argmin(ram))
        if self.kind == "mu":
            return int(np.argmin(util))
        if self.kind == "rs":
            return int(self._rng.integers(n))
        if self.kind == "lp":
            return int(np.argmax(migration_priority(util, mips)))
        return max_correlation(hist, hlen, ram)


def migration_priority(util: np.ndarray, capacity: np.ndarray | None) -> np.ndarray:
    """The seed's M = L/P per VM: L its load (CPU utilization, 0..1), P its performance share
    (its CPU capacity over the largest one's on the host; 1 when unknown). Higher moves first."""
    if capacity is None:
        return np.asarray(util, dtype=np.float64)
    cap = np.asarray(capacity, dtype=np.float64)
    share = cap / cap.max() if cap.size and cap.max() > 0 else np.ones_like(cap)
    return np.asarray(util, dtype=np.float64) / np.where(share > 0, share, 1.0)


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
