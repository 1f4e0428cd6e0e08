"""ClusterState.allocate compiled (numba, the optional `fast` extra; numpy otherwise).

Each served placement allocates once; the numpy form (add, compare, any, add in place on a column
view) is five calls of ~1 us on five values, the compiled one a single call. Same IEEE operations
in the same order: `alloc + demand > capacity + 1e-9` refuses (NaN does not), then
`alloc += demand` and one more workload on the host. No fastmath. POOLVISOR_NO_JIT=1 disables it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from poolvisor.jit import CompileOnce

_add: Callable[..., bool] | None = None


def add_checked(alloc: Any, capacity: Any, count: Any, h: int, demand: Any, force: bool) -> bool:
    """alloc[:, h] += demand and count[h] += 1, unless (not force) some resource would exceed
    capacity + 1e-9: then nothing changes and the answer is False."""
    r_n = alloc.shape[0]
    if not force:
        for r in range(r_n):
            if alloc[r, h] + demand[r] > capacity[r, h] + 1e-9:
                return False
    for r in range(r_n):
        alloc[r, h] += demand[r]
    count[h] += 1
    return True


def _build() -> None:
    global _add
    from numba import njit

    fn = njit(cache=True, nogil=True)(add_checked)
    a, c = np.zeros((1, 1)), np.ones((1, 1))
    for demand in (np.zeros(1), np.zeros((1, 2))[:, 0]):  # contiguous, and a column of a table
        fn(a, c, np.zeros(1, dtype=np.int32), 0, demand, False)
    _add = fn


_compiler = CompileOnce(_build)


def add() -> Callable[..., bool] | None:
    """The compiled add_checked, or None (numba missing or disabled): use numpy."""
    if _add is not None:
        return _add
    return _add if _compiler.ready() else None
