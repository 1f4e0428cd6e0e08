"""Feasibility check run on every assignment before it is printed, reported or applied."""

from __future__ import annotations

import numpy as np

from poolvisor.domain.errors import PoolvisorError
from poolvisor.policies.packing.problem import tolerance


class InfeasiblePackingError(PoolvisorError):
    """An algorithm produced an assignment that violates capacity or leaves items out: a bug, not input."""

    status_code = 500
    code = "infeasible_packing"


def bin_loads(items: np.ndarray, assignment: np.ndarray, k: int) -> np.ndarray:
    """(k, d) summed sizes per bin (unplaced items, -1, are ignored)."""
    loads = np.zeros((k, items.shape[1]))
    placed = assignment >= 0
    np.add.at(loads, assignment[placed], items[placed])
    return loads


def check_assignment(
    items: np.ndarray,
    capacity: np.ndarray,
    assignment: np.ndarray,
    *,
    allow_unplaced: bool = False,
    bin_capacities: np.ndarray | None = None,
) -> int:
    """Raise InfeasiblePackingError unless every item sits in one bin within capacity; returns bins used.

    `bin_capacities` (k, d) gives per-bin capacities (fixed bins, e.g. hosts' free capacity);
    otherwise every bin has `capacity`.
    """
    a = np.asarray(assignment)
    n = items.shape[0]
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        raise InfeasiblePackingError(
            f"assignment must be an int array of shape ({n},), got {a.shape} {a.dtype}"
        )
    if not allow_unplaced and np.any(a < 0):
        raise InfeasiblePackingError(f"{int(np.sum(a < 0))} item(s) left unplaced")
    if np.any(a < -1):
        raise InfeasiblePackingError("bin indices must be >= -1")
    k = int(a.max()) + 1 if n else 0
    if bin_capacities is not None:
        caps = np.asarray(bin_capacities, dtype=np.float64)
        if k > caps.shape[0]:
            raise InfeasiblePackingError(f"bin {k - 1} does not exist (only {caps.shape[0]} bins)")
        caps = caps[:k]
        tol = np.maximum(np.abs(caps), 1.0) * 1e-9
    else:
        caps = np.broadcast_to(capacity, (k, items.shape[1]))
        tol = np.broadcast_to(tolerance(capacity), caps.shape)
    over = bin_loads(items, a, k) > caps + tol
    if over.any():
        b, j = np.argwhere(over)[0]
        raise InfeasiblePackingError(f"bin {int(b)} exceeds capacity in dimension {int(j)}")
    return int(np.unique(a[a >= 0]).size)
