"""Scenario building blocks: saturation inflation, fleet specs, workload slicing."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.online import scenarios as sc
from poolvisor.traces.workload import Workload


def _wl(n: int = 10) -> Workload:
    gpu = np.arange(1, n + 1, dtype=float) * 100
    demand = np.stack([np.ones(n), np.ones(n), gpu], 1)
    return Workload("w", ("cpu", "mem", "gpu"), np.arange(n, dtype=float), np.arange(n) + 5.0, demand)


def test_inflate_reaches_the_target_and_stops() -> None:
    wl = _wl()
    out = sc.inflate(wl, wl.demand[:, 2], capacity=2000.0, load=3.0, seed=7)
    total = out.demand[:, 2].sum()
    assert total >= 6000 and total - out.demand[-1, 2] < 6000  # the last arrival crosses the target
    np.testing.assert_array_equal(out.demand[:10, 2], wl.demand[:, 2])  # trace order first
    assert np.all(np.diff(out.arrival) >= 0) and out.arrival[0] == 0
    assert np.all(np.isinf(out.departure))
    again = sc.inflate(wl, wl.demand[:, 2], capacity=2000.0, load=3.0, seed=7)
    np.testing.assert_array_equal(again.demand, out.demand)  # seeded
    with pytest.raises(InvalidInputError):
        sc.inflate(wl, wl.demand[:, 2], capacity=0.0, load=1.0, seed=0)


def test_fleet_spec() -> None:
    groups = sc.parse_fleet("64x512:3, 32x128:2")
    assert [(g.count, g.vcpu, g.memory_gb) for g in groups] == [(3, 64, 512), (2, 32, 128)]
    fleet = sc.vm_fleet(groups, ("vcpu", "memory_gb"))()
    assert fleet.n == 5 and fleet.state.capacity[:, 4].tolist() == [32, 128]
    for bad in ("64x512", "64x512:0", "ax1:2"):
        with pytest.raises(InvalidInputError):
            sc.parse_fleet(bad)


def test_workload_checks_and_slices() -> None:
    wl = _wl()
    assert len(wl.until(3.0)) == 3 and len(wl.head(4)) == 4
    with pytest.raises(InvalidInputError, match="sorted"):
        Workload("w", ("cpu",), np.array([1.0, 0.0]), np.array([2.0, 2.0]), np.ones((2, 1)))
    with pytest.raises(InvalidInputError, match="precedes"):
        Workload("w", ("cpu",), np.array([1.0]), np.array([0.0]), np.ones((1, 1)))
