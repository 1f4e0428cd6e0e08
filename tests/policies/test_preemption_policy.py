"""The preemption policy: lowest classes first, fewest victims, never an equal or higher class."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from poolvisor.policies.preemption import PRIORITY_CLASSES, choose_victims, class_rank

SPOT, LOW, NORMAL, HIGH, SYSTEM = range(5)


def _run(free, cap, demand, vh, vd, vr, rank, eligible=None, **kw):
    free = np.asarray(free, dtype=float)
    return choose_victims(free, np.asarray(cap, dtype=float),
                          np.ones(free.shape[1], bool) if eligible is None else np.asarray(eligible),
                          np.asarray(demand, dtype=float), np.asarray(vh), np.asarray(vd, dtype=float),
                          np.asarray(vr), rank, **kw)


def test_class_names_rank_in_order():
    assert [class_rank(c) for c in PRIORITY_CLASSES] == [SPOT, LOW, NORMAL, HIGH, SYSTEM]


def test_fewest_victims_on_one_host():
    # host 0 frees 4 with two small spots; host 1 frees 4 with one big spot: host 1, one victim
    p = _run([[0, 0]], [[8, 8]], [4], [0, 0, 1], [[2, 2, 4]], [SPOT, SPOT, SPOT], HIGH)
    assert p is not None and p.host == 1 and p.victims == (2,)


def test_spot_before_low_even_if_more_victims():
    # host 0: one low workload would do; host 1: two spots do: spot first
    p = _run([[0, 0]], [[8, 8]], [4], [0, 1, 1], [[4, 2, 2]], [LOW, SPOT, SPOT], HIGH)
    assert p is not None and p.host == 1 and sorted(p.victims) == [1, 2] and p.max_rank == SPOT


def test_never_equal_or_higher_class():
    assert _run([[0]], [[8]], [4], [0], [[8]], [NORMAL], NORMAL) is None
    assert _run([[0]], [[8]], [4], [0], [[8]], [HIGH], NORMAL) is None
    assert _run([[0]], [[8]], [4], [0], [[8]], [SPOT], SPOT) is None


def test_ineligible_hosts_are_not_used():
    assert _run([[0, 0]], [[8, 8]], [4], [0], [[8]], [SPOT], HIGH, eligible=[False, True]) is None


def test_all_resources_must_fit():
    # the victim frees cpu but not memory
    assert _run([[0], [0]], [[8], [8]], [2, 2], [0], [[4], [0]], [SPOT], HIGH) is None
    p = _run([[0], [0]], [[8], [8]], [2, 2], [0, 0], [[4, 0], [0, 3]], [SPOT, SPOT], HIGH)
    assert p is not None and sorted(p.victims) == [0, 1]


def test_set_is_irreducible():
    # largest first takes 5 then 3, but 5 alone with the free 1 already covers 6
    p = _run([[1]], [[10]], [6], [0, 0], [[3, 5]], [SPOT, SPOT], HIGH)
    assert p is not None and p.victims == (1,)


def test_workload_limit_counts():
    # host 0 has room but is at its workload limit: one eviction is needed for the count
    p = _run([[5]], [[10]], [1], [0, 0], [[1, 4]], [SPOT, SPOT], HIGH,
             count=np.array([2]), max_count=np.array([2]))
    assert p is not None and len(p.victims) == 1


@pytest.mark.parametrize("seed", range(30))
def test_matches_brute_force_count_in_one_dimension(seed):
    rng = np.random.default_rng(seed)
    hosts, n = 3, 7
    cap = np.full((1, hosts), 10.0)
    vh = rng.integers(0, hosts, n)
    vd = rng.integers(1, 5, (1, n)).astype(float)
    vr = rng.integers(0, 3, n)
    free = np.array([[max(0.0, 10.0 - vd[0, vh == h].sum()) for h in range(hosts)]])
    demand = np.array([float(rng.integers(1, 10))])
    p = _run(free, cap, demand, vh, vd, vr, HIGH)
    best = None  # brute force: (lowest max class, fewest victims)
    for h in range(hosts):
        idx = np.flatnonzero(vh == h)
        for k in range(len(idx) + 1):
            for combo in itertools.combinations(idx, k):
                if free[0, h] + vd[0, list(combo)].sum() + 1e-9 >= demand[0]:
                    key = (max((vr[c] for c in combo), default=-1), k)
                    best = key if best is None or key < best else best
    if best is None:
        assert p is None
        return
    assert p is not None
    assert free[0, p.host] + vd[0, list(p.victims)].sum() + 1e-9 >= demand[0]
    assert all(vh[v] == p.host for v in p.victims)
    got = (max((int(vr[v]) for v in p.victims), default=-1), len(p.victims))
    if best[1] == 0:
        return  # it fits without evicting: placement's business, not preemption's
    assert got == best
