"""Queue disciplines: each one's order on small hand-made queues, plus DRF's fairness property."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.queueing import DISCIPLINES, Pending, order

NAN = float("nan")


def pending(projects, ranks=None, demand=None, duration=None) -> Pending:
    n = len(projects)
    return Pending(np.arange(n), np.asarray(projects), np.asarray(ranks if ranks is not None else [2] * n),
                   np.asarray(demand if demand is not None else [[1.0, 1.0]] * n, dtype=float),
                   np.asarray(duration if duration is not None else [NAN] * n, dtype=float))


def test_fifo_and_strict_priority():
    p = pending([0, 1, 0, 1], ranks=[0, 4, 2, 2])
    assert order("fifo", p).tolist() == [0, 1, 2, 3]
    assert order("priority", p).tolist() == [1, 2, 3, 0]


def test_shortest_declared_job_first_undeclared_last():
    p = pending([0, 0, 0, 0], duration=[60, NAN, 5, 60])
    assert order("sjf", p).tolist() == [2, 0, 3, 1]


def test_round_robin_between_projects():
    p = pending([0, 0, 0, 1, 2, 1])
    assert order("round-robin", p).tolist() == [0, 3, 4, 1, 5, 2]


def test_ps_n_serves_projects_with_fewer_running_workloads_first():
    # project 0: demand 2 units pending, 4 running -> P = 0.5; project 1: 1 unit, 1 running -> 1;
    # project 2: nothing running -> first of all
    p = pending([0, 0, 1, 2])
    cap = np.array([10.0, 10.0])
    got = order("ps-n", p, capacity=cap, running=np.array([4, 1, 0]))
    assert got.tolist() == [3, 2, 0, 1]
    # more demand at equal running count raises P (the seed's S/N)
    p = pending([0, 1, 1])
    assert order("ps-n", p, capacity=cap, running=np.array([1, 1])).tolist() == [1, 2, 0]


def test_drf_within_class_strict_between():
    # project 0 already holds half the cpu: project 1 is served first within the class; the system
    # request goes before all of them
    cap = np.array([10.0, 10.0])
    usage = np.array([[5.0, 0.0], [0.0, 0.0]])
    p = pending([0, 0, 1, 1, 0], ranks=[2, 2, 2, 2, 4])
    got = order("drf", p, capacity=cap, usage=usage).tolist()
    assert got[0] == 4
    assert got[1:3] == [2, 3]  # project 1 catches up to a 0.2 share... and is still below 0.5
    assert got[3:] == [0, 1]


def test_drf_weights_and_fairness_property():
    rng = np.random.default_rng(3)
    n = 60
    p = pending(rng.integers(0, 3, n).tolist(), demand=rng.uniform(0.1, 1.0, (n, 2)).tolist())
    cap = np.array([20.0, 20.0])
    w = np.array([1.0, 2.0, 1.0])
    got = order("drf", p, capacity=cap, weights=w)
    assert sorted(got.tolist()) == list(range(n))
    # after serving any prefix, a project served next had the lowest weighted dominant share among
    # projects with requests left (the DRF invariant)
    used = np.zeros((3, 2))
    left = np.bincount(p.project, minlength=3)
    for i in got:
        q = p.project[i]
        dom = (used / cap).max(axis=1) / w
        live = left > 0
        assert dom[q] <= dom[live].min() + 1e-12
        used[q] += p.demand[i]
        left[q] -= 1


def test_within_a_project_fifo_in_every_discipline():
    p = pending([0, 1, 0, 1, 0], duration=[5, 5, 5, 5, 5])
    for d in DISCIPLINES:
        got = order(d, p, capacity=np.array([10.0, 10.0]), running=np.array([1, 1])).tolist()
        mine = [i for i in got if p.project[i] == 0]
        assert mine == [0, 2, 4], d


def test_unknown_discipline_and_empty_queue():
    with pytest.raises(InvalidInputError):
        order("lottery", pending([0]))
    assert order("drf", pending([])).size == 0
