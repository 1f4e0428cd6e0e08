"""Fragmentation of a pool: free capacity stranded where no flavor fits, and what still fits.

Hosts' free amounts (allocatable - allocated) per resource, flavors' demands per resource. A
host is stranded when no flavor of the catalogue fits in its free amounts; its free capacity is
stranded, by resource. Per flavor: how many more instances fit (per host, the smallest
free // demand over the resources it asks for, summed). The largest placeable flavor is the one
with the largest dominant share (max over resources of demand / mean host capacity) among those
that fit somewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Fragmentation:
    stranded: F64  # (R,) free capacity on hosts where no flavor fits
    free: F64  # (R,) free capacity over all hosts
    stranded_hosts: int
    fits: npt.NDArray[np.int64]  # (F,) instances of each flavor that still fit
    largest: int | None  # index of the largest flavor that fits somewhere, or None


def fragmentation(free: npt.ArrayLike, capacity: npt.ArrayLike, flavors: npt.ArrayLike) -> Fragmentation:
    """`free` and `capacity` (H, R), `flavors` (F, R) demands (0 = not asked for)."""
    fr = np.maximum(np.asarray(free, dtype=np.float64), 0.0)
    cap = np.asarray(capacity, dtype=np.float64)
    fl = np.asarray(flavors, dtype=np.float64)
    h, r = fr.shape
    if fl.size == 0 or h == 0:
        return Fragmentation(
            fr.sum(axis=0) if h else np.zeros(r),
            fr.sum(axis=0) if h else np.zeros(r),
            h,
            np.zeros(len(fl), np.int64),
            None,
        )
    asked = fl > 0  # (F, R)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(asked[None, :, :], np.floor(fr[:, None, :] / np.where(asked, fl, 1.0)[None]), np.inf)
    per_host = ratio.min(axis=2)  # (H, F): instances of flavor f fitting on host h
    per_host[~np.isfinite(per_host)] = 0  # a flavor asking for nothing
    fits_host = per_host >= 1
    stranded_mask = ~fits_host.any(axis=1)
    fits = per_host.sum(axis=0).astype(np.int64)
    mean_cap = np.where(cap.mean(axis=0) > 0, cap.mean(axis=0), np.inf)
    share = (fl / mean_cap[None, :]).max(axis=1)
    ok = np.flatnonzero(fits > 0)
    largest = int(ok[np.argmax(share[ok])]) if len(ok) else None
    return Fragmentation(
        fr[stranded_mask].sum(axis=0), fr.sum(axis=0), int(stranded_mask.sum()), fits, largest
    )
