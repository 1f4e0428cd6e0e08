"""SPECpower models: table points, CloudSim's interpolation, linear models, range check."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.power import HP_ML110_G4, HP_ML110_G5, PowerTable, clip_utilization

TABLE = PowerTable.of(HP_ML110_G4, HP_ML110_G5)


def test_table_points() -> None:
    u = np.linspace(0, 1, 11)
    assert np.allclose(TABLE.power(np.zeros(11, dtype=np.intp), u), HP_ML110_G4)
    assert np.allclose(TABLE.power(np.ones(11, dtype=np.intp), u), HP_ML110_G5)
    assert TABLE.power(np.array([0, 1]), np.array([0.0, 0.0])).tolist() == [86.0, 93.7]
    assert TABLE.power(np.array([0, 1]), np.array([1.0, 1.0])).tolist() == [117.0, 135.0]


def test_linear_interpolation_between_points() -> None:
    p = TABLE.power(np.array([0, 1, 1]), np.array([0.05, 0.45, 0.999]))
    assert p[0] == pytest.approx((86.0 + 89.4) / 2)
    assert p[1] == pytest.approx((110.0 + 116.0) / 2)
    assert p[2] == pytest.approx(133.0 + 2.0 * 0.99)


def test_monotone_over_fine_grid() -> None:
    u = np.linspace(0, 1, 1001)
    for m in (0, 1):
        p = TABLE.power(np.full(u.size, m, dtype=np.intp), u)
        assert np.all(np.diff(p) >= -1e-12)


def test_linear_model() -> None:
    t = PowerTable.of(PowerTable.linear(100.0, 250.0))
    p = t.power(np.zeros(3, dtype=np.intp), np.array([0.0, 0.37, 1.0]))
    assert np.allclose(p, [100.0, 100.0 + 150.0 * 0.37, 250.0])


def test_range_and_shape_errors() -> None:
    with pytest.raises(InvalidInputError):
        TABLE.checked_power(np.array([0]), np.array([1.2]))
    with pytest.raises(InvalidInputError):
        PowerTable.of((1.0, 2.0))


def test_clip_utilization() -> None:
    assert clip_utilization(np.array([0.5, 1.005, 1.02])).tolist() == [0.5, 1.0, 1.02]
