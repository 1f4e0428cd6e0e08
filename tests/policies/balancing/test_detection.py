"""Overload detectors: THR, IQR, MAD, LR/LRR (CloudSim arithmetic and the corrected variants)."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.detection import (
    RULE_FALLBACK,
    RULE_IQR,
    RULE_LR,
    RULE_NONE,
    RULE_THR,
    Detector,
    iqr,
    mad,
    ols_cloudsim,
    robust_wls,
    tricube_weights,
    wls,
)


def test_thr() -> None:
    over, rule = Detector("thr", 0.8).overloaded(np.array([0.5, 0.8, 0.81]))
    assert over.tolist() == [False, False, True]
    assert rule.tolist() == [RULE_NONE, RULE_NONE, RULE_THR]


def test_iqr_matches_cloudsim_definition() -> None:
    data = np.array([[0.1, 0.9, 0.3, 0.5, 0.7, 0.2, 0.4, 0.8, 0.6, 0.35, 0.45, 0.55, 0.0]])
    n = np.array([12])
    s = np.sort(data[0, :12])
    expect = s[round(0.75 * 13) - 1] - s[round(0.25 * 13) - 1]
    assert iqr(data, n)[0] == pytest.approx(expect)


def test_mad_and_median_even_odd() -> None:
    x = np.array([[1.0, 2.0, 3.0, 4.0, 100.0, 0.0]])
    # odd n=5: median 3, deviations 2,1,0,1,97 -> median 1
    assert mad(x, np.array([5]))[0] == pytest.approx(1.0)
    # even n=4: median 2.5, deviations 1.5,0.5,0.5,1.5 -> 1.0
    assert mad(x, np.array([4]))[0] == pytest.approx(1.0)


def test_ols_cloudsim_matches_polyfit() -> None:
    rng = np.random.default_rng(1)
    y = rng.random((5, 10))
    b0, b1 = ols_cloudsim(y)
    for i in range(5):
        slope, icpt = np.polyfit(np.arange(1, 11), y[i], 1)
        assert b0[i] == pytest.approx(icpt) and b1[i] == pytest.approx(slope)


def test_weighted_fits_favour_recent_points() -> None:
    w = tricube_weights(10)
    assert np.all(w > 0) and np.all(np.diff(w) > 0)
    y = np.array([[0.2] * 9 + [0.9]])  # a jump in the newest sample
    _, slope_ols = ols_cloudsim(y)
    _, slope_w = wls(y, w)
    assert slope_w[0] > slope_ols[0] > 0
    # one outlier in the middle hardly moves the robust fit
    y2 = np.array([[0.1 * k for k in range(10)]])
    y2[0, 4] = 5.0
    _, b1r = robust_wls(y2)
    assert b1r[0] == pytest.approx(0.1, abs=0.02)


def test_history_detectors_fall_back_when_short() -> None:
    hist = np.zeros((2, 30))
    hist[:, :5] = 0.9
    ru = np.array([0.75, 0.6])
    for kind in ("iqr", "mad", "lr", "lrr"):
        over, rule = Detector(kind, 1.5).overloaded(ru, hist, np.array([5, 5]), np.array([20.0, 20.0]))
        assert over.tolist() == [True, False]
        assert rule.tolist() == [RULE_FALLBACK, RULE_NONE]


def test_iqr_threshold_rule() -> None:
    hist = np.tile(np.r_[np.linspace(0.3, 0.7, 12), np.zeros(18)], (2, 1))
    hlen = np.array([12, 12])
    spread = iqr(hist, hlen)[0]
    thr = 1 - 1.5 * spread
    over, rule = Detector("iqr", 1.5).overloaded(np.array([thr - 0.01, thr + 0.01]), hist, hlen)
    assert over.tolist() == [False, True]
    assert rule[1] == RULE_IQR


@pytest.mark.parametrize("compat", [True, False])
def test_lr_prediction_and_linear_parts_agree(compat: bool) -> None:
    rng = np.random.default_rng(7)
    hist = np.zeros((50, 30))
    hist[:, :12] = rng.random((50, 12)) * 0.9
    hlen = np.full(50, 12)
    mig = np.full(50, 27.84)
    ru = rng.random(50)
    d = Detector("lr", 1.2, weighted=not compat)
    over, rule = d.overloaded(ru, hist, hlen, mig)
    m, g = d.lr_parts(hist)
    assert np.array_equal(d.lr_overloaded_from_parts(m, g, hlen, mig, ru), over)
    assert set(rule[over].tolist()) <= {RULE_LR}
    # a rising history is predicted to overload, a flat low one is not
    rising = np.zeros((1, 30))
    rising[0, :10] = np.linspace(0.9, 0.45, 10)  # newest first
    flat = np.zeros((1, 30))
    flat[0, :10] = 0.3
    assert d.overloaded(np.array([0.5]), rising, np.array([10]), np.array([10.0]))[0][0]
    assert not d.overloaded(np.array([0.5]), flat, np.array([10]), np.array([10.0]))[0][0]


def test_unknown_detector() -> None:
    with pytest.raises(InvalidInputError):
        Detector("xyz", 1.0)
