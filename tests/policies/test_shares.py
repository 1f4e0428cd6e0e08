"""The shares core: static allocation policies and the water-filled grant under contention."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.shares import ALLOCATION_POLICIES, check_policy, grant, set_aside


def test_static_policies() -> None:
    r, lim = np.array([[1.0, 0.0]]), np.array([[4.0, 2.0]])
    assert set_aside("min", r, lim, np.array([[1000, 1000]])).tolist() == [[1.0, 0.0]]
    assert set_aside("max", r, lim, np.array([[1000, 1000]])).tolist() == [[4.0, 2.0]]
    assert set_aside("balanced", r, lim, np.array([[1000, 500]])).tolist() == [[2.5, 0.5]]
    assert set_aside("balanced", r, lim, np.array([[4000, 2000]])).tolist() == [[4.0, 2.0]]
    with pytest.raises(InvalidInputError):
        check_policy("median")
    assert ALLOCATION_POLICIES == ("min", "max", "balanced")


def test_no_contention_gives_demand_up_to_the_limit() -> None:
    d = np.array([[3.0], [5.0]])
    g = grant(d, np.zeros((2, 1)), np.array([[4.0], [4.0]]), np.ones((2, 1)), np.array([10.0]))
    assert g.ravel().tolist() == [3.0, 4.0]


def test_shares_split_the_capacity_and_reservations_are_honoured() -> None:
    # 3 workloads want 8 each on 12: shares 2:1:1 -> 6, 3, 3
    d = np.full((3, 1), 8.0)
    g = grant(d, np.zeros((3, 1)), d, np.array([[2000.0], [1000.0], [1000.0]]), np.array([12.0]))
    assert g.ravel() == pytest.approx([6, 3, 3])
    # the third reserves 5: it gets 5, the others split 7 by 2:1
    g = grant(d, np.array([[0.0], [0.0], [5.0]]), d, np.array([[2000.0], [1000.0], [1000.0]]),
              np.array([12.0]))
    assert g.ravel() == pytest.approx([14 / 3, 7 / 3, 5])


def test_water_filling_gives_unused_share_to_the_others() -> None:
    # equal shares on 12; the first wants only 2 (or is limited to 2): the others split 10
    d = np.array([[2.0], [9.0], [9.0]])
    g = grant(d, np.zeros((3, 1)), np.full((3, 1), 9.0), np.ones((3, 1)), np.array([12.0]))
    assert g.ravel() == pytest.approx([2, 5, 5])
    d = np.full((3, 1), 9.0)
    g = grant(d, np.zeros((3, 1)), np.array([[2.0], [9.0], [9.0]]), np.ones((3, 1)), np.array([12.0]))
    assert g.ravel() == pytest.approx([2, 5, 5])


def test_reservations_above_capacity_are_scaled() -> None:
    d = np.full((2, 1), 10.0)
    g = grant(d, np.array([[6.0], [3.0]]), d, np.ones((2, 1)), np.array([6.0]))
    assert g.ravel() == pytest.approx([4, 2])


def test_many_hosts_and_resources_at_once_match_one_host_at_a_time() -> None:
    rng = np.random.default_rng(7)
    n, H, R = 200, 13, 3
    host = rng.integers(0, H, n)
    d = rng.uniform(0, 10, (n, R))
    lim = d * rng.uniform(0.5, 1.5, (n, R))
    res = np.minimum(lim, d) * rng.uniform(0, 0.5, (n, R))
    sh = rng.integers(100, 4000, (n, R)).astype(float)
    cap = rng.uniform(5, 60, (H, R))
    g = grant(d, res, lim, sh, cap, host)
    for k in range(H):
        i = host == k
        alone = grant(d[i], res[i], lim[i], sh[i], cap[k])
        assert np.allclose(g[i], alone)
        want = np.minimum(d[i], lim[i]).sum(axis=0)
        assert np.all(g[i].sum(axis=0) <= cap[k] + 1e-6)  # never more than the host has
        short = want > cap[k]
        assert np.allclose(g[i].sum(axis=0)[short], cap[k][short])  # work-conserving when short
        assert np.all(g[i] <= np.minimum(d[i], lim[i]) + 1e-9)
        lo = np.minimum(res[i], np.minimum(d[i], lim[i]))
        fits_res = lo.sum(axis=0) <= cap[k]
        assert np.all((g[i] >= lo - 1e-9)[:, fits_res])  # reservations honoured when they fit
