"""Host overload detection: static threshold (THR), IQR, MAD, local regression (LR, LRR).

Every function is vectorized over hosts. Histories are (H, L) arrays with the newest value in
column 0 and a per-host length (the number of values after trailing zeros are trimmed), as in
CloudSim's PowerHostUtilizationHistory. The statistics reproduce CloudSim's MathUtil and
commons-math3 arithmetic; LR and LRR fit with the paper's weights (``weighted=True``: tricube
weights, and for LRR robust re-weighting) or by ordinary least squares (``weighted=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from poolvisor.domain.errors import InvalidInputError

# rule codes recorded with each decision (index into RULES)
RULE_NONE, RULE_THR, RULE_IQR, RULE_MAD, RULE_LR, RULE_LRR, RULE_FALLBACK, RULE_UNDERLOAD = range(8)
RULES = ("none", "thr", "iqr", "mad", "lr", "lrr", "fallback-thr", "underload")


_COLS = np.arange(64)


def _sorted_prefix(hist: np.ndarray, hlen: np.ndarray) -> np.ndarray:
    """Rows sorted ascending over their first hlen values; the rest pushed to +inf."""
    return np.sort(np.where(_COLS[None, : hist.shape[1]] < hlen[:, None], hist, np.inf), axis=1)


def median_sorted(s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """commons-math3 Percentile(50) (legacy estimator) of sorted rows with n >= 1 valid values."""
    rows = np.arange(s.shape[0])
    pos = 50.0 * (n + 1) / 100
    fpos = np.floor(pos)
    ipos = fpos.astype(np.intp)
    dif = pos - fpos
    lower = s[rows, ipos - 1]
    upper = s[rows, np.minimum(ipos, s.shape[1] - 1)]
    with np.errstate(invalid="ignore"):
        return np.where(dif == 0, lower, lower + dif * (upper - lower))


def iqr(hist: np.ndarray, hlen: np.ndarray) -> np.ndarray:
    """CloudSim MathUtil.iqr: data[round(0.75(n+1))-1] - data[round(0.25(n+1))-1] of the sorted data."""
    s = _sorted_prefix(hist, hlen)
    rows = np.arange(s.shape[0])
    q1 = np.floor(0.25 * (hlen + 1) + 0.5).astype(np.intp) - 1
    q3 = np.floor(0.75 * (hlen + 1) + 0.5).astype(np.intp) - 1
    return s[rows, q3] - s[rows, q1]


def mad(hist: np.ndarray, hlen: np.ndarray) -> np.ndarray:
    """Median absolute deviation from the median (CloudSim MathUtil.mad)."""
    s = _sorted_prefix(hist, hlen)
    med = median_sorted(s, hlen)
    with np.errstate(invalid="ignore"):
        dev = np.sort(np.abs(med[:, None] - s), axis=1)  # the +inf padding stays at the end
    return median_sorted(dev, hlen)


def ols_cloudsim(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intercept and slope of y (H, n) against x = 1..n, as commons-math3 SimpleRegression computes them."""
    n = y.shape[1]
    xbar = np.full(y.shape[0], 1.0)
    ybar = y[:, 0].copy()
    sxx = np.zeros(y.shape[0])
    sxy = np.zeros(y.shape[0])
    sx = np.full(y.shape[0], 1.0)
    sy = y[:, 0].copy()
    for k in range(1, n):
        x = float(k + 1)
        fact1 = 1.0 + k
        fact2 = k / (1.0 + k)
        dx = x - xbar
        dy = y[:, k] - ybar
        sxx = sxx + dx * dx * fact2
        sxy = sxy + dx * dy * fact2
        xbar = xbar + dx / fact1
        ybar = ybar + dy / fact1
        sx = sx + x
        sy = sy + y[:, k]
    slope = sxy / sxx
    intercept = (sy - slope * sx) / n
    return intercept, slope


def tricube_weights(n: int) -> np.ndarray:
    """Tricube weights for x = 1..n, largest for the newest point (x = n); all strictly positive."""
    d = (n - np.arange(1, n + 1)) / n
    return (1 - d**3) ** 3


def wls(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of y (H, n) against x = 1..n with weights w (n,) or (H, n)."""
    x = np.arange(1, y.shape[1] + 1, dtype=np.float64)
    w = np.broadcast_to(w, y.shape)
    sw = w.sum(axis=1)
    xm = (w * x).sum(axis=1) / sw
    ym = (w * y).sum(axis=1) / sw
    dx = x[None, :] - xm[:, None]
    slope = (w * dx * (y - ym[:, None])).sum(axis=1) / (w * dx * dx).sum(axis=1)
    return ym - slope * xm, slope


def robust_wls(y: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Tricube fit re-weighted by bisquare weights of the residuals (Cleveland's robust loess)."""
    n = y.shape[1]
    w = tricube_weights(n)
    b0, b1 = wls(y, w)
    x = np.arange(1, n + 1, dtype=np.float64)
    for _ in range(iterations):
        r = y - (b0[:, None] + b1[:, None] * x[None, :])
        s6 = 6 * np.median(np.abs(r), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(s6[:, None] > 0, r / s6[:, None], 0.0)
        w2 = w[None, :] * np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        ok = (w2 > 0).sum(axis=1) >= 2
        b0r, b1r = wls(np.where(ok[:, None], y, 0.0), np.where(ok[:, None], w2, 1.0))
        b0, b1 = np.where(ok, b0r, b0), np.where(ok, b1r, b1)
    return b0, b1


@dataclass(frozen=True)
class Detector:
    """Overload detector: ``kind`` in thr/iqr/mad/lr/lrr, ``param`` the threshold or safety parameter.

    Histories shorter than ``min_history`` (12 for IQR/MAD, 10 for LR/LRR) fall back to a static
    threshold ``fallback`` on the requested utilization, as CloudSim does. ``weighted``: LR is a
    tricube-weighted least-squares fit and LRR its robust (bisquare re-weighted) form, as in the
    paper; False fits both by ordinary least squares, as CloudSim 3.0.3 does (it computes the
    weights but never applies them).
    """

    kind: str
    param: float
    weighted: bool = True
    fallback: float = 0.7
    interval_s: float = 300.0
    regression_window: int = 10

    def __post_init__(self) -> None:
        if self.kind not in ("thr", "iqr", "mad", "lr", "lrr"):
            raise InvalidInputError(f"unknown overload detector {self.kind!r}")

    @property
    def uses_history(self) -> bool:
        return self.kind != "thr"

    @property
    def linear(self) -> bool:
        """True when the prediction is a linear functional of the history (OLS or fixed-weight WLS),
        so that a host's prediction with one more VM is the sum of two precomputed parts."""
        return self.kind == "lr" or (self.kind == "lrr" and not self.weighted)

    @cached_property
    def lr_basis(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(a, b, xbar, sxx) with history column j <-> x = w - j: mean = hist.a, slope = hist.b / sxx."""
        w = self.regression_window
        x = np.arange(w, 0, -1, dtype=np.float64)  # column 0 (newest) is x = w
        wt = tricube_weights(w)[::-1] if self.weighted else np.ones(w)
        xbar = float((wt * x).sum() / wt.sum())
        return wt / wt.sum(), wt * (x - xbar), xbar, float((wt * (x - xbar) ** 2).sum())

    def lr_parts(self, hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two linear functionals (weighted mean, slope numerator) of the newest w values."""
        a, b, _, _ = self.lr_basis
        w = self.regression_window
        h = hist[..., :w]
        return h @ a, h @ b

    def lr_overloaded_from_parts(
        self, m: np.ndarray, g: np.ndarray, hlen: np.ndarray, mig_time_s: np.ndarray, req_util: np.ndarray
    ) -> np.ndarray:
        """Same decision as :meth:`overloaded` for LR from precomputed :meth:`lr_parts`."""
        return self.lr_overloaded_from_steps(m, g, hlen, np.ceil(mig_time_s / self.interval_s), req_util)

    def lr_overloaded_from_steps(
        self, m: np.ndarray, g: np.ndarray, hlen: np.ndarray, steps: np.ndarray, req_util: np.ndarray
    ) -> np.ndarray:
        """:meth:`lr_overloaded_from_parts` with the look-ahead already in scheduling intervals."""
        _, _, xbar, sxx = self.lr_basis
        w = self.regression_window
        pred = (m + g / sxx * (w + steps - xbar)) * self.param
        return np.where(hlen >= w, pred >= 1, req_util > self.fallback)

    def overloaded(
        self,
        req_util: np.ndarray,
        hist: np.ndarray | None = None,
        hlen: np.ndarray | None = None,
        mig_time_s: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mask of overloaded hosts and the rule that decided each host.

        ``req_util``: requested MIPS / capacity per host; ``hist``/``hlen``: utilization history;
        ``mig_time_s``: longest migration time of the host's VMs (LR/LRR look that far ahead).
        """
        req_util = np.asarray(req_util, dtype=np.float64)
        if self.kind == "thr":
            over = req_util > self.param
            return over, np.where(over, RULE_THR, RULE_NONE)
        assert hist is not None and hlen is not None
        fb = req_util > self.fallback
        if self.kind in ("iqr", "mad"):
            ok = hlen >= 12
            spread = np.zeros_like(req_util)
            if ok.any():
                spread[ok] = (iqr if self.kind == "iqr" else mad)(hist[ok], hlen[ok])
            over = np.where(ok, req_util > 1 - self.param * spread, fb)
            rule = RULE_IQR if self.kind == "iqr" else RULE_MAD
            return over, np.where(over, np.where(ok, rule, RULE_FALLBACK), RULE_NONE)
        w = self.regression_window
        ok = hlen >= w
        pred = np.zeros_like(req_util)
        if ok.any():
            y = hist[ok, :w][:, ::-1]
            if not self.weighted:  # OLS for both LR and LRR, in CloudSim's arithmetic
                b0, b1 = ols_cloudsim(y)
            elif self.kind == "lr":
                b0, b1 = wls(y, tricube_weights(w))
            else:
                b0, b1 = robust_wls(y)
            assert mig_time_s is not None
            steps = np.ceil(mig_time_s[ok] / self.interval_s)
            pred[ok] = (b0 + b1 * (w + steps)) * self.param
        over = np.where(ok, pred >= 1, fb)
        rule = RULE_LR if self.kind == "lr" else RULE_LRR
        return over, np.where(over, np.where(ok, rule, RULE_FALLBACK), RULE_NONE)
