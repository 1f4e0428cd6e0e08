"""The balancing limits (policies/balancing/limits.py) and the L/P selection policy."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.policies.balancing.limits import (
    COOLDOWN,
    HOST_BUSY,
    LOW_GAIN,
    PING_PONG,
    POOL_BUSY,
    Limits,
    admit,
    imbalance,
    move_gains,
)
from poolvisor.policies.balancing.selection import Selector, migration_priority


def _admit(src, dst, limits, **kw):
    m = len(src)
    args = dict(since_moved=np.full(m, np.inf), returns=np.zeros(m, bool), net_gain=np.ones(m),
                needs_gain=np.zeros(m, bool), busy=np.zeros(8, np.int64), pool_busy=0)
    args.update(kw)
    return admit(np.asarray(src), np.asarray(dst), limits=limits, **args)


def test_imbalance_is_the_mean_std_dev_over_active_hosts():
    load = np.array([[0.9, 0.1, 0.5, 0.0], [0.5, 0.5, 0.5, 0.0]])
    active = np.array([True, True, True, False])
    assert imbalance(load, active) == pytest.approx((np.std([0.9, 0.1, 0.5]) + 0.0) / 2)
    assert imbalance(load, np.zeros(4, bool)) == 0.0


def test_move_gains_match_one_recomputation_per_move():
    rng = np.random.default_rng(3)
    load = rng.uniform(0, 1, (2, 6))
    active = np.array([True] * 5 + [False])
    src, dst = np.array([0, 1, 2, 4]), np.array([3, 5, 1, 0])
    w = rng.uniform(0, 0.2, (2, 4))
    got = move_gains(load, active, w, src, dst)
    for m in range(4):
        after = load.copy()
        after[:, src[m]] -= w[:, m]
        after[:, dst[m]] += w[:, m]
        act = active.copy()
        act[dst[m]] = True
        assert got[m] == pytest.approx(imbalance(load, active) - imbalance(after, act))
    # moving load from the busiest to the idlest host lowers the imbalance
    assert move_gains(np.array([[0.9, 0.1]]), np.array([True, True]), np.array([[0.2]]),
                      np.array([0]), np.array([1]))[0] > 0


def test_cooldown_ping_pong_and_gain_hold_moves_back():
    lim = Limits(per_host=9, per_pool=9, cooldown_s=600, min_gain=0.05)
    keep, why = _admit([0, 1, 2, 3], [4, 5, 6, 7], lim,
                       since_moved=np.array([10.0, np.inf, np.inf, 900.0]),
                       returns=np.array([False, True, False, False]),
                       net_gain=np.array([1.0, 1.0, 0.01, 0.01]),
                       needs_gain=np.array([False, False, True, False]))
    assert keep.tolist() == [False, False, False, True]  # the last is an evacuation: no gain needed
    assert why == [COOLDOWN, PING_PONG, LOW_GAIN, ""]


def test_a_draining_host_cannot_take_every_migration_slot():
    """Host 0 drains (six moves out, planned first); hosts 1 and 2 have one move each. With 2 slots
    per host and 4 per pool, host 0 gets its 2 and the others still get theirs."""
    lim = Limits(per_host=2, per_pool=4)
    src = [0, 0, 0, 0, 0, 0, 1, 2]
    dst = [3, 4, 5, 6, 7, 3, 4, 5]
    keep, why = _admit(src, dst, lim)
    assert keep.sum() == 4
    assert keep[6] and keep[7]  # the other hosts' moves were not starved
    assert int(keep[:6].sum()) == 2
    assert set(why[2:6]) == {POOL_BUSY}  # the pool filled up: host 0 got two of its four slots


def test_slots_count_migrations_in_flight_and_the_pool_limit():
    lim = Limits(per_host=1, per_pool=2)
    busy = np.zeros(8, np.int64)
    busy[3] = 1  # host 3 already receives one
    keep, why = _admit([0, 1, 2], [3, 4, 5], lim, busy=busy, pool_busy=1)
    assert keep.tolist() == [False, True, False]
    assert why == [HOST_BUSY, "", POOL_BUSY]


def test_limits_validate():
    with pytest.raises(ValueError):
        Limits(per_host=0)
    with pytest.raises(ValueError):
        Limits(min_gain=-1)


def test_lp_selection_moves_the_vm_with_the_highest_load_over_performance():
    util = np.array([0.5, 0.9, 0.6])
    cap = np.array([1000.0, 4000.0, 1000.0])  # the second is big: its share is 1, the others 0.25
    m = migration_priority(util, cap)
    assert m.tolist() == pytest.approx([2.0, 0.9, 2.4])
    sel = Selector("lp")
    ram = np.array([1.0, 1.0, 1.0])
    hist = np.zeros((3, 0))
    assert sel.pick(ram, util, hist, np.zeros(3, int), cap) == 2
    assert sel.pick(ram, util, hist, np.zeros(3, int)) == 1  # no capacities: the busiest
