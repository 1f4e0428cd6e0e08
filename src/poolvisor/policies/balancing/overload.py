"""The planner's one overload check: would a host with these sums be overloaded?

At the start of a step the detector (:meth:`Detector.overloaded`) decides which hosts are
overloaded, from their measured histories. While the planner plans, it asks the same question of
hosts whose VM lists it has changed: after a VM left (selection), after a VM is added (PABFD's
"not overloaded after allocation"). That question is :func:`overloaded` here, on a host's planned
sums, and nowhere else; :func:`poolvisor.policies.balancing.kernels.overloaded` is its compiled
twin (same IEEE operations in the same order, given the host's LR parts or history spread as
scalars; tests check they agree).

The LR check is the regression written as a linear functional of the history (the sums ``lr_m``,
``lr_g`` of the VMs' parts), which equals CloudSim's incremental SimpleRegression up to rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from poolvisor.policies.balancing.detection import Detector

#: how the check decides (:attr:`Rule.mode`)
THR, LINEAR, IQR, MAD, GENERAL = range(5)
#: IQR and MAD need this many history values, else they fall back to the static threshold
SPREAD_MIN_HISTORY = 12


class Rule(NamedTuple):
    """The detector as plain numbers, so that compiled kernels take it as one argument.

    ``mode``: THR (requested utilization > ``param``), LINEAR (LR or unweighted LRR as a linear
    functional), IQR, MAD (``1 - param * spread`` of the history), GENERAL (any other detector:
    :meth:`Detector.overloaded` on the history; numpy only). Histories shorter than
    ``min_history`` use ``fallback`` as a static threshold. LR looks ahead by the longest
    migration: ceil(max RAM / ``mig_bw`` / ``interval``) steps.
    """

    mode: int
    param: float
    fallback: float
    min_history: int
    window: int
    xbar: float
    sxx: float
    mig_bw: float
    interval: float


def rule_for(d: Detector, history_len: int, mig_bw: float) -> Rule:
    """The check for detector ``d`` on views with ``history_len`` history columns.

    Without any history every history-based detector is its fallback threshold (the placement at
    t = 0), so that is a THR rule.
    """
    _, _, xbar, sxx = d.lr_basis
    w = d.regression_window
    if not d.uses_history:
        mode, param, mh = THR, d.param, 0
    elif history_len == 0:
        mode, param, mh = THR, d.fallback, 0
    elif d.linear and history_len >= w:
        mode, param, mh = LINEAR, d.param, w
    elif d.kind in ("iqr", "mad"):
        mode, param, mh = (IQR if d.kind == "iqr" else MAD), d.param, SPREAD_MIN_HISTORY
    else:
        mode, param, mh = GENERAL, d.param, w
    return Rule(
        mode,
        float(param),
        float(d.fallback),
        mh,
        w,
        float(xbar),
        float(sxx),
        float(mig_bw),
        float(d.interval_s),
    )


def overloaded(
    rule: Rule,
    d: Detector,
    req_util: np.ndarray,
    hlen: np.ndarray,
    max_ram: np.ndarray,
    lr_m: np.ndarray | None,
    lr_g: np.ndarray | None,
    hist: np.ndarray | None,
) -> np.ndarray:
    """Overload of hosts with requested utilization ``req_util``, history length ``hlen``, largest
    VM RAM ``max_ram`` and either LR parts ``lr_m``/``lr_g`` (LINEAR) or histories ``hist``
    (rows; IQR, MAD, GENERAL). Vectorized over hosts; the inputs the mode does not read may be None."""
    if rule.mode == THR:
        return np.asarray(req_util > rule.param)
    if rule.mode == LINEAR:
        assert lr_m is not None and lr_g is not None
        long = hlen >= rule.min_history
        # a host too short for LR may have no VM at all (largest RAM -inf): its RAM is not used
        steps = np.ceil(np.where(long, max_ram, 0.0) / rule.mig_bw / rule.interval)
        pred = (lr_m + lr_g / rule.sxx * (rule.window + steps - rule.xbar)) * rule.param
        return np.where(long, pred >= 1, req_util > rule.fallback)
    assert hist is not None
    return d.overloaded(req_util, hist, hlen, max_ram / rule.mig_bw)[0]
