"""A vector bin packing problem and its result, with input validation shared by every algorithm.

Items are an (n, d) array of sizes, bins a (d,) capacity. Sizes stay in the caller's units (often
integers held exactly in float64) so that feasibility is checked exactly; scoring uses sizes
normalized by capacity. An assignment is an (n,) int array of bin indices 0..bins-1 (-1 = unplaced,
only allowed when packing into a fixed set of bins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poolvisor.domain.errors import InvalidInputError

# Relative tolerance on capacity comparisons; zero effect on integer data, absorbs float drift otherwise.
REL_TOL = 1e-9


def as_problem(items: Any, capacity: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to float64 arrays: items (n, d) >= 0 finite, capacity (d,) > 0, each item fits."""
    s = np.asarray(items, dtype=np.float64)
    c = np.asarray(capacity, dtype=np.float64)
    if s.ndim == 1 and c.ndim == 1 and s.size == 0:
        s = s.reshape(0, c.size)
    if c.ndim != 1 or c.size == 0:
        raise InvalidInputError("capacity must be a non-empty 1-d vector")
    if s.ndim != 2 or s.shape[1] != c.size:
        raise InvalidInputError(f"items must have shape (n, {c.size}), got {s.shape}")
    if not (np.all(np.isfinite(c)) and np.all(c > 0)):
        raise InvalidInputError("capacities must be finite and > 0")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise InvalidInputError("item sizes must be finite and >= 0")
    too_big = np.flatnonzero(np.any(s > c * (1 + REL_TOL), axis=1))
    if too_big.size:
        raise InvalidInputError(f"item {int(too_big[0])} is larger than the bin capacity; it fits in no bin")
    return s, c


def tolerance(capacity: np.ndarray) -> np.ndarray:
    return np.asarray(capacity, dtype=np.float64) * REL_TOL


@dataclass
class Packing:
    """An assignment plus how it was obtained. `optimal` is True only when bins == a proven lower bound
    or an exact solver proved that fewer bins are infeasible."""

    assignment: np.ndarray
    bins: int
    algo: str
    lower_bound: int
    wall_s: float = 0.0
    optimal: bool = False
    trace: list[str] = field(default_factory=list)  # short notes: which stage improved what

    def to_dict(self, *, with_assignment: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "bins": self.bins,
            "lower_bound": self.lower_bound,
            "algo": self.algo,
            "wall_s": round(self.wall_s, 6),
            "optimal": self.optimal,
            "gap_pct": round(100.0 * (self.bins - self.lower_bound) / self.lower_bound, 4)
            if self.lower_bound
            else 0.0,
            "trace": list(self.trace),
        }
        if with_assignment:
            d["assignment"] = [int(b) for b in self.assignment]
        return d


def relabel(assignment: np.ndarray) -> np.ndarray:
    """Bins renumbered 0..k-1 in order of first appearance; -1 stays -1."""
    a = np.asarray(assignment, dtype=np.int64)
    out = np.full(a.shape, -1, dtype=np.int64)
    placed = a >= 0
    if placed.any():
        _, first, inv = np.unique(a[placed], return_index=True, return_inverse=True)
        rank = np.empty(first.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.size)
        out[placed] = rank[inv]
    return out


def bin_count(assignment: np.ndarray) -> int:
    a = np.asarray(assignment)
    return int(np.unique(a[a >= 0]).size)
