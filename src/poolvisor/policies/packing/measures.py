"""Scalar item sizes for ordering items: L1, L-infinity, L2, volume and weighted sums (static or dynamic).

All measures work on sizes normalized by capacity (u = s / C), so dimensions are comparable.
Dynamic weights follow Panigrahy et al. (2011): a dimension weighs as much as the demand still left
to place in it, so the scarcest resource drives the order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "l1": lambda u: u.sum(axis=1),
    "linf": lambda u: u.max(axis=1),
    "l2": lambda u: np.sqrt(np.einsum("ij,ij->i", u, u)),
    # volume (Panigrahy's "FFDProd"); zero sizes do not zero the whole product
    "prod": lambda u: np.exp(np.log(u + 1e-3).sum(axis=1)),
    # static weights: mean normalized demand per dimension (Panigrahy's "FFDAvgSum")
    "avg": lambda u: u @ (u.mean(axis=0) if u.shape[0] else np.zeros(u.shape[1])),
}


def item_size(u: np.ndarray, measure: str) -> np.ndarray:
    return MEASURES[measure](u)


def residual_measure(r: np.ndarray, measure: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Size of normalized residual vectors r (k, d); smaller = tighter fit (used by best fit)."""
    if measure == "linf":
        return r.max(axis=1)
    if measure == "l2":
        return np.einsum("ij,ij->i", r, r)
    if weights is not None:
        return r @ weights
    return r.sum(axis=1)
