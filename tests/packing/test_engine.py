"""Every algorithm returns feasible assignments, never below the lower bound; the improvers improve."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.packing import cpsat, local_search
from poolvisor.policies.packing.bounds import l1_bound, lower_bound, mt_l2_bound
from poolvisor.policies.packing.feasibility import InfeasiblePackingError, check_assignment
from poolvisor.policies.packing.problem import bin_count
from poolvisor.policies.packing.registry import HEURISTICS, algorithms, solve


def random_instance(seed: int, n: int = 60, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cap = np.full(d, 100.0)
    return rng.integers(5, 60, size=(n, d)).astype(float), cap


@pytest.mark.parametrize("name", sorted(HEURISTICS))
@pytest.mark.parametrize("seed", [0, 1])
def test_heuristics_feasible_and_above_bound(name: str, seed: int) -> None:
    items, cap = random_instance(seed)
    a = HEURISTICS[name](items, cap)
    k = check_assignment(items, cap, a)
    assert k >= lower_bound(items, cap)
    assert k <= items.shape[0]


@pytest.mark.parametrize("algo", ["heuristics", "local-search", "best"])
def test_improvers_feasible_and_no_worse(algo: str) -> None:
    items, cap = random_instance(3)
    base = solve(items, cap, "heuristics")
    p = solve(items, cap, algo, time_limit=0.5)
    assert check_assignment(items, cap, p.assignment) == p.bins
    assert p.lower_bound <= p.bins <= base.bins
    assert p.to_dict()["bins"] == p.bins


def test_lower_bounds() -> None:
    cap = np.array([10.0, 10.0])
    items = np.array([[6, 1], [6, 1], [6, 1], [1, 2]], dtype=float)
    assert l1_bound(items, cap) == 2  # ceil(19/10)
    assert mt_l2_bound(items[:, 0], 10.0) == 3  # three items > C/2 cannot share
    assert lower_bound(items, cap) == 3
    assert lower_bound(np.zeros((0, 2)), cap) == 0


def test_exact_fit_proved_optimal() -> None:
    cap = np.array([10.0, 10.0])
    items = np.array([[5, 5]] * 8, dtype=float)
    p = solve(items, cap, "best")
    assert p.bins == 4 and p.optimal


def test_bad_inputs() -> None:
    with pytest.raises(InvalidInputError):
        solve(np.array([[11.0, 1.0]]), np.array([10.0, 10.0]))
    with pytest.raises(InvalidInputError):
        solve(np.array([[1.0]]), np.array([10.0, 10.0]))
    with pytest.raises(InvalidInputError):
        solve(np.array([[1.0, 1.0]]), np.array([10.0, 10.0]), "nope")
    assert "best" in algorithms()


def test_feasibility_check_catches_overflow_and_unplaced() -> None:
    cap = np.array([10.0])
    items = np.array([[6.0], [6.0]])
    with pytest.raises(InfeasiblePackingError, match="exceeds capacity"):
        check_assignment(items, cap, np.array([0, 0]))
    with pytest.raises(InfeasiblePackingError, match="unplaced"):
        check_assignment(items, cap, np.array([0, -1]))
    assert check_assignment(items, cap, np.array([0, 1])) == 2


def test_local_search_improves_a_bad_start() -> None:
    items, cap = random_instance(7, n=80)
    bad = np.arange(items.shape[0])  # one item per bin
    better = local_search.improve(items, cap, bad, lower_bound(items, cap), time_limit=2.0, seed=1)
    k = check_assignment(items, cap, better)
    ffd = bin_count(HEURISTICS["ffd-l1"](items, cap))
    assert k < items.shape[0] // 2
    assert k <= ffd + 1


def test_cpsat_improves_or_proves() -> None:
    if not cpsat.available():
        pytest.skip("OR-Tools not installed (solver extra)")
    rng = np.random.default_rng(11)
    cap = np.array([100.0, 100.0])
    # 8 bins exactly filled, shuffled: optimum 8; first fit in input order needs more
    parts = []
    for _ in range(8):
        a = rng.integers(20, 50, size=2)
        b = rng.integers(10, 30, size=2)
        parts += [a, b, 100 - a - b]
    items = np.array(parts, dtype=float)[rng.permutation(24)]
    ff = HEURISTICS["ff"](items, cap)
    assert bin_count(ff) > 8
    best, proved = cpsat.improve(items, cap, ff, lower_bound(items, cap), time_limit=20.0)
    assert check_assignment(items, cap, best) == 8
    assert proved


def test_cpsat_proves_heuristic_optimal() -> None:
    if not cpsat.available():
        pytest.skip("OR-Tools not installed (solver extra)")
    cap = np.array([10.0, 10.0])
    # pairwise items conflict in one dimension or the other: 3 bins needed although L1 says 2
    items = np.array([[6, 1], [6, 1], [1, 6], [1, 6], [4, 4]], dtype=float)
    start = np.array([0, 1, 0, 1, 2])
    assert check_assignment(items, cap, start) == 3
    best, proved = cpsat.improve(items, cap, start, lower_bound=2, time_limit=10.0)
    assert bin_count(best) == 3 and proved


def test_solve_without_solver_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpsat, "available", lambda: False)
    items, cap = random_instance(5)
    p = solve(items, cap, "best", time_limit=0.3)
    assert any("OR-Tools not installed" in t for t in p.trace)
    check_assignment(items, cap, p.assignment)
    from poolvisor.domain.errors import UnavailableError

    with pytest.raises(UnavailableError, match="solver"):
        solve(items, cap, "cpsat")


def test_overflow_search_packs_a_perfect_instance() -> None:
    from poolvisor.policies.packing import overflow

    rng = np.random.default_rng(5)
    cap = np.array([100.0, 100.0, 100.0])
    parts = []
    for _ in range(10):  # 10 bins, each filled exactly by 4 items
        cuts = np.sort(rng.integers(1, 100, size=(3, 3)), axis=1)
        pieces = np.diff(np.concatenate([np.zeros((3, 1)), cuts, np.full((3, 1), 100.0)], axis=1), axis=1)
        parts += list(pieces.T)
    items = np.floor(np.array(parts) * 0.96)[rng.permutation(40)]  # 10 bins, each 96% full at most
    ffd = HEURISTICS["ffd-l1"](items, cap)
    assert bin_count(ffd) > 10
    start = np.where(ffd < 10, ffd, -1)  # keep 10 bins, the other items are to be placed
    found = overflow.pack_k(items, cap, start, 10, deadline=float("inf"), rng=np.random.default_rng(0),
                            max_iters=5000)
    assert found is not None
    assert check_assignment(items, cap, found) == 10
