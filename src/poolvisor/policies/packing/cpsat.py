"""Improvement with OR-Tools CP-SAT (the optional `solver` extra), warm-started from a heuristic.

For a target of k-1 bins (k = best known), a feasibility model: x[i,b] booleans, each item in one
bin, per-bin per-dimension capacity. Symmetry breaking: a greedy clique of pairwise conflicting items
is fixed to bins 0..c-1, and (items sorted by decreasing size) item i may only use bins <= i.
The best solution is given as a hint (its first k-1 bins). INFEASIBLE proves the current solution
optimal; FEASIBLE gives a better one and the loop continues until the lower bound or the deadline.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from poolvisor.policies.packing.problem import relabel, tolerance


def available() -> bool:
    try:
        import ortools.sat.python.cp_model  # noqa: F401
    except ImportError:
        return False
    return True


def _clique(items: np.ndarray, capacity: np.ndarray, order: np.ndarray) -> list[int]:
    tol = tolerance(capacity)
    clique: list[int] = []
    for i in order:
        if not clique or np.all(np.any(items[clique] + items[i] > capacity + tol, axis=1)):
            clique.append(int(i))
    return clique


def _symmetry(items: np.ndarray, capacity: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Clique fixed to bins 0..c-1; rank[i] = position of a non-clique item in decreasing-size order,
    so that item may only use bins < c + rank + 1 (bins c.. are numbered by their first item)."""
    n = items.shape[0]
    order = np.lexsort((np.arange(n), -(items / capacity).sum(axis=1)))
    clique = _clique(items, capacity, order)
    in_clique = np.zeros(n, dtype=bool)
    in_clique[clique] = True
    rest = order[~in_clique[order]]
    rank = np.zeros(n, dtype=np.int64)
    rank[rest] = np.arange(rest.size)
    return clique, rank


def model_size(items: np.ndarray, capacity: np.ndarray, k: int) -> int:
    """Number of booleans the k-bin model would have after symmetry breaking (clique items are fixed)."""
    clique, rank = _symmetry(items, capacity)
    free = np.ones(items.shape[0], dtype=bool)
    free[clique] = False
    return int(np.minimum(k, len(clique) + rank[free] + 1).sum())


def _integral(items: np.ndarray, capacity: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """CP-SAT needs integers: exact when the data is integral, otherwise scaled up conservatively
    (sizes rounded up, capacities down: solutions stay feasible, but infeasibility proves nothing)."""
    if np.all(items == np.round(items)) and np.all(capacity == np.round(capacity)):
        return items.astype(np.int64), capacity.astype(np.int64), True
    scale = 1e6 / capacity
    up = np.ceil(items * scale - 1e-6).astype(np.int64)  # forgives float noise (< 1e-12 of capacity)
    return up, np.floor(capacity * scale + 1e-6).astype(np.int64), False


def try_bins(
    items: np.ndarray,
    capacity: np.ndarray,
    k: int,
    time_limit: float,
    hint: np.ndarray | None = None,
    workers: int = 1,
) -> tuple[str, np.ndarray | None]:
    """("feasible", assignment) | ("infeasible", None) | ("unknown", None) for packing into k bins."""
    from ortools.sat.python import cp_model

    t0 = time.perf_counter()
    n, d = items.shape
    si, ci, exact = _integral(items, capacity)
    clique, rank = _symmetry(items, capacity)
    if len(clique) > k:
        return "infeasible", None
    fixed = {i: b for b, i in enumerate(clique)}
    model = cp_model.CpModel()
    x: dict[tuple[int, int], Any] = {}
    for i in range(n):
        if i % 16 == 0 and time.perf_counter() - t0 > time_limit:
            return "unknown", None  # building the model alone used up the time
        if i in fixed:
            x[i, fixed[i]] = model.new_constant(1)
            continue
        hi = min(k, len(clique) + int(rank[i]) + 1)
        for b in range(hi):
            x[i, b] = model.new_bool_var(f"x{i}_{b}")
        model.add_exactly_one(x[i, b] for b in range(hi))
    per_bin: list[list[int]] = [[] for _ in range(k)]
    for i, b in x:
        per_bin[b].append(i)
    for b in range(k):
        if time.perf_counter() - t0 > time_limit:
            return "unknown", None
        for j in range(d):
            terms = [(x[i, b], int(si[i, j])) for i in per_bin[b] if si[i, j]]
            if terms and sum(c for _, c in terms) > ci[j]:
                model.add(sum(c * v for v, c in terms) <= int(ci[j]))
    if hint is not None:
        for i, b in enumerate(hint):
            if (int(i), int(b)) in x and i not in fixed:
                model.add_hint(x[int(i), int(b)], 1)
    solver = cp_model.CpSolver()
    # building the model counts against the limit too
    solver.parameters.max_time_in_seconds = max(0.01, time_limit - (time.perf_counter() - t0))
    solver.parameters.num_workers = max(1, workers)
    status = solver.solve(model)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out = np.full(n, -1, dtype=np.int64)
        for (i, b), v in x.items():
            if solver.boolean_value(v):
                out[i] = b
        return "feasible", out
    if status == cp_model.INFEASIBLE and exact:
        return "infeasible", None
    return "unknown", None


def _hint_for(best: np.ndarray, items: np.ndarray, capacity: np.ndarray, k: int) -> np.ndarray:
    """The best solution without its lightest bin, bins renumbered to match the symmetry breaking."""
    a = relabel(best)
    m = int(a.max()) + 1
    load = np.zeros(m)
    np.add.at(load, a, (items / capacity).sum(axis=1))
    drop = int(np.argmin(load)) if m > k else -1
    clique, rank = _symmetry(items, capacity)
    mapping = np.full(m, -1, dtype=np.int64)
    for c, i in enumerate(clique):
        if a[i] != drop:
            mapping[a[i]] = c
    first = np.full(m, np.iinfo(np.int64).max)
    in_clique = np.zeros(items.shape[0], dtype=bool)
    in_clique[clique] = True
    np.minimum.at(first, a[~in_clique], rank[~in_clique])
    others = [b for b in np.argsort(first, kind="stable") if mapping[b] < 0 and b != drop]
    mapping[others] = np.arange(len(clique), len(clique) + len(others))
    mapping[mapping >= k] = -1
    return mapping[a]


def improve(
    items: np.ndarray,
    capacity: np.ndarray,
    assignment: np.ndarray,
    lower_bound: int,
    time_limit: float,
    workers: int = 1,
) -> tuple[np.ndarray, bool]:
    """(best assignment, proved_optimal). Needs ortools; call `available()` first."""
    deadline = time.perf_counter() + time_limit
    best = relabel(assignment)
    k = int(best.max()) + 1
    while k > lower_bound:
        left = deadline - time.perf_counter()
        if left <= 0.01:
            return best, False
        status, sol = try_bins(items, capacity, k - 1, left, _hint_for(best, items, capacity, k - 1), workers)
        if status == "feasible" and sol is not None:
            best, k = relabel(sol), int(sol.max()) + 1
        elif status == "infeasible":
            return best, True
        else:
            return best, False
    return best, True
