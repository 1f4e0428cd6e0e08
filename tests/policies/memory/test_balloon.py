"""Balloon targets: never below a guest's floor (reservation, working set), least recently active
first under pressure, hysteresis between low and high, memory given back when calm."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poolvisor.policies.memory.balloon import balloon_targets, floors
from poolvisor.policies.memory.fragmentation import fragmentation


def test_pressure_reclaims_least_recently_active_first_down_to_low() -> None:
    demand = np.array([4096.0, 4096, 4096])
    t = balloon_targets(demand, demand, working_set=[1024, 1024, 1024], reserved=[0, 0, 2048],
                        last_active=[30, 10, 20], capacity=10_000, high=0.9, low=0.8)
    # 12288 granted > 9000: reclaim 12288 - 8000 = 4288, from guest 1 (oldest) then guest 2 (reserved 2048)
    assert t.granted.tolist() == [4096, 1024, 2880]
    assert t.reclaimed == 4288 and t.returned == 0
    assert t.pressure_after == 0.8


def test_between_thresholds_nothing_moves_and_calm_gives_back_most_active_first() -> None:
    demand = np.array([4096.0, 4096])
    t = balloon_targets(demand, [4096, 4096], [100, 100], [0, 0], [1, 2], capacity=9500)  # 86 %
    assert t.granted.tolist() == [4096, 4096] and t.reclaimed == t.returned == 0
    t = balloon_targets(demand, [1000, 1000], [100, 100], [0, 0], [1, 2], capacity=10_000)
    assert t.granted.tolist() == [3904, 4096]  # budget 8000 - 2000: guest 1 (most active) whole first
    assert t.returned == 6000


def test_a_grown_working_set_gets_its_memory_back_even_under_pressure() -> None:
    t = balloon_targets([4096.0, 4096], [1024, 4096], [3000, 0], [0, 0], [5, 1], capacity=5000)
    assert t.granted[0] >= 3000
    assert t.overflow == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 8192), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1),
                          st.floats(0, 1000)), min_size=1, max_size=30),
       st.floats(1000, 100_000), st.floats(0.5, 0.95))
def test_invariants(guests: list[tuple[float, float, float, float, float]], cap: float, low: float) -> None:
    d = np.array([g[0] for g in guests])
    granted = d * np.array([g[1] for g in guests])
    ws = d * np.array([g[2] for g in guests])
    res = d * np.array([g[3] for g in guests])
    act = np.array([g[4] for g in guests])
    high = min(1.0, low + 0.05)
    t = balloon_targets(d, granted, ws, res, act, cap, high, low)
    fl = floors(d, ws, res)
    assert np.all(t.granted >= fl - 1e-6) and np.all(t.granted <= d + 1e-6)
    total0 = float(np.maximum(granted, fl).sum())
    if total0 > high * cap:  # pressure: down to low, or every guest at its floor
        assert t.granted.sum() <= low * cap + 1e-6 or np.allclose(t.granted, fl)
        assert t.returned <= float((np.maximum(granted, fl) - granted).sum()) + 1e-6
    elif total0 < low * cap:  # calm: never above low
        assert t.granted.sum() <= low * cap + 1e-6 and t.reclaimed == 0


def test_fragmentation_report() -> None:
    # two hosts: one with room for 2 small, one with 1 vcpu free (stranded: nothing fits)
    free = np.array([[4.0, 8192], [1.0, 16384]])
    cap = np.array([[8.0, 16384], [8.0, 16384]])
    flavors = np.array([[2.0, 2048], [4.0, 8192], [8.0, 32768]])
    f = fragmentation(free, cap, flavors)
    assert f.fits.tolist() == [2, 1, 0]
    assert f.stranded_hosts == 1 and f.stranded.tolist() == [1.0, 16384.0]
    assert f.largest == 1
    assert fragmentation(np.zeros((0, 2)), np.zeros((0, 2)), flavors).largest is None
