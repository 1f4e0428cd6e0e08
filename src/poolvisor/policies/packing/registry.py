"""Algorithm registry (name -> function) and `solve`, the one entry point used by CLI, bench and pool.

Every heuristic is `fn(items, capacity) -> assignment`. Improvement algorithms start from the best
heuristic of the portfolio: `local-search` (built in), `cpsat` (needs the `solver` extra) and
`best` (portfolio, then local search, then CP-SAT when installed, sharing the time limit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np

from poolvisor.domain.errors import InvalidInputError, UnavailableError
from poolvisor.policies.packing import cpsat, local_search
from poolvisor.policies.packing.bincentric import bin_centric
from poolvisor.policies.packing.bounds import lower_bound
from poolvisor.policies.packing.feasibility import check_assignment
from poolvisor.policies.packing.greedy import item_centric
from poolvisor.policies.packing.problem import Packing, as_problem, bin_count, relabel

Heuristic = Callable[[np.ndarray, np.ndarray], np.ndarray]

HEURISTICS: dict[str, Heuristic] = {"ff": partial(item_centric, order="none", rule="first")}
for _m in ("l1", "linf", "l2", "avg", "prod"):
    HEURISTICS[f"ffd-{_m}"] = partial(item_centric, order="decreasing", rule="first", measure=_m)
    HEURISTICS[f"bfd-{_m}"] = partial(item_centric, order="decreasing", rule="best", measure=_m)
HEURISTICS["ffd-dyn"] = partial(item_centric, order="dynamic", rule="first")
HEURISTICS["bfd-dyn"] = partial(item_centric, order="dynamic", rule="best")
for _s in ("dot", "l2"):
    HEURISTICS[f"bc-{_s}"] = partial(bin_centric, score=_s, dynamic=False)
    HEURISTICS[f"bc-{_s}-dyn"] = partial(bin_centric, score=_s, dynamic=True)

CPSAT_MAX_VARS = 20_000
LS_MAX_CELLS = 4_000_000
IMPROVERS = ("local-search", "cpsat", "best", "heuristics")
DESCRIPTIONS = {
    "ff": "first fit, input order",
    "heuristics": "best of all heuristics (portfolio)",
    "local-search": "portfolio + bin-emptying tabu search",
    "cpsat": "portfolio + OR-Tools CP-SAT (solver extra)",
    "best": "portfolio + local search + CP-SAT when installed",
}


def algorithms() -> list[str]:
    return [*HEURISTICS, *IMPROVERS]


PORTFOLIO = ("ffd-l2", "bc-dot-dyn", "bfd-dyn", "bc-l2-dyn", "ffd-prod", "ffd-l1", "bfd-l2", "bfd-avg",
             "bc-dot", "bc-l2", "bfd-prod", "ffd-linf", "ffd-avg", "ffd-dyn", "bfd-l1", "bfd-linf", "ff")


def portfolio(items: np.ndarray, capacity: np.ndarray, lb: int, deadline: float = np.inf,
              ) -> tuple[str, np.ndarray]:
    """Run the heuristics (a cheap one, then the strongest), stop early at the lower bound or at the
    deadline, but not before the first four have run (one on instances above 2,000 items, where the
    quadratic bin-centric ones get slow); (name, assignment) of the best."""
    best_name, best, best_k = "", np.zeros(0, dtype=np.int64), np.inf
    at_least = 4 if items.shape[0] <= 2000 else 1
    for done, name in enumerate(PORTFOLIO, start=1):
        a = HEURISTICS[name](items, capacity)
        k = bin_count(a)
        if k < best_k:
            best_name, best, best_k = name, a, k
        if best_k <= lb or (done >= at_least and time.perf_counter() > deadline):
            break
    return best_name, best


def solve(
    items: np.ndarray,
    capacity: np.ndarray,
    algo: str = "best",
    time_limit: float = 1.0,
    *,
    seed: int = 0,
    workers: int = 1,
) -> Packing:
    """Pack all items into as few bins of `capacity` as the algorithm finds; result checked feasible."""
    t0 = time.perf_counter()
    s, c = as_problem(items, capacity)
    if algo not in HEURISTICS and algo not in IMPROVERS:
        raise InvalidInputError(f"unknown packing algorithm {algo!r}; known: {', '.join(algorithms())}")
    if algo == "cpsat" and not cpsat.available():
        raise UnavailableError("algorithm 'cpsat' needs OR-Tools: pip install 'poolvisor[solver]'")
    lb = lower_bound(s, c)
    trace: list[str] = []
    proved = False
    if s.shape[0] == 0:
        return Packing(np.zeros(0, dtype=np.int64), 0, algo, 0, time.perf_counter() - t0, True)
    if algo in HEURISTICS:
        a = relabel(HEURISTICS[algo](s, c))
    else:
        name, a = portfolio(s, c, lb, t0 + 0.25 * time_limit)
        a = relabel(a)
        trace.append(f"{name}: {bin_count(a)} bins")
        left = time_limit - (time.perf_counter() - t0)
        run_ls = algo in ("local-search", "best")
        # CP-SAT's model has up to n*k booleans: in "best" it only runs where it can finish in time
        run_cp = algo == "cpsat" or (
            algo == "best" and cpsat.available()
            and cpsat.model_size(s, c, bin_count(a) - 1) <= CPSAT_MAX_VARS
        )
        if algo == "best" and not cpsat.available():
            trace.append("cpsat skipped: OR-Tools not installed (pip install 'poolvisor[solver]')")
        if run_ls and s.shape[0] * bin_count(a) > LS_MAX_CELLS:
            run_ls = False  # its tabu memory is (items x bins)
            trace.append(f"local-search skipped: more than {LS_MAX_CELLS} item-bin pairs")
        if run_ls and bin_count(a) > lb and left > 0:
            k0 = bin_count(a)
            a = local_search.improve(s, c, a, lb, left * (0.75 if run_cp else 1.0), seed=seed)
            trace.append(f"local-search: {k0} -> {bin_count(a)} bins")
        left = time_limit - (time.perf_counter() - t0)
        if run_cp and bin_count(a) > lb and left > 0.02:
            k0 = bin_count(a)
            a, proved = cpsat.improve(s, c, a, lb, left, workers)
            trace.append(f"cpsat: {k0} -> {bin_count(a)} bins" + (" (proved optimal)" if proved else ""))
    k = check_assignment(s, c, a)
    return Packing(a, k, algo, lb, time.perf_counter() - t0, proved or k <= lb, trace)
