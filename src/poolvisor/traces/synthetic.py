"""Scale a real trace up: N synthetic VMs resampled from PlanetLab per-VM utilization shapes.

Each synthetic VM copies one source VM's day (drawn with replacement), rotated by a random
time shift (so VMs sharing a source do not peak together) and multiplied by a per-VM scale
factor (log-normal with mean 1, so the pool's mean load is preserved), then clipped to 0..100 %.
Same seed, same output: scale tests and benchmarks are reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.traces.planetlab import SAMPLES, read_planetlab


def load_shapes(days: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """Stack the (N_i, 288) CPU % arrays of several PlanetLab day directories."""
    if not days:
        raise InvalidInputError("no PlanetLab day directory given")
    return np.concatenate([read_planetlab(d).util for d in days], axis=0)


def resample_shapes(
    shapes: np.ndarray,
    n: int,
    seed: int = 0,
    *,
    shift: bool = True,
    scale_sigma: float = 0.2,
    integer: bool = False,
    dtype: type[np.floating] = np.float64,
) -> np.ndarray:
    """(n, T) utilization in percent drawn from `shapes` (M, T).

    `scale_sigma` is the log-normal sigma of the per-VM scale factor (0 = exact copies);
    `integer=True` rounds to whole percent like the PlanetLab files. Work is O(n*T), vectorized,
    done in chunks so that 100,000 VMs need no more than the output array plus a few MB.
    """
    src = np.asarray(shapes, dtype=np.float64)
    if src.ndim != 2 or src.shape[0] == 0 or src.shape[1] == 0:
        raise InvalidInputError(f"shapes must be a non-empty (VMs, samples) array, got shape {src.shape}")
    if n < 0:
        raise InvalidInputError(f"number of VMs must be >= 0, got {n}")
    if scale_sigma < 0:
        raise InvalidInputError(f"scale_sigma must be >= 0, got {scale_sigma}")
    m, t = src.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, m, size=n)
    offsets = rng.integers(0, t, size=n) if shift else np.zeros(n, dtype=np.int64)
    # log-normal with E[factor] = 1: exp(sigma*z - sigma^2/2)
    factors = np.exp(scale_sigma * rng.standard_normal(n) - scale_sigma**2 / 2)
    out = np.empty((n, t), dtype=dtype)
    cols = np.arange(t)
    chunk = max(1, (1 << 22) // t)  # ~32 MB of float64 temporaries per chunk
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        idx = (cols[None, :] + offsets[lo:hi, None]) % t
        block = src[rows[lo:hi, None], idx] * factors[lo:hi, None]
        np.clip(block, 0.0, 100.0, out=block)
        if integer:
            np.rint(block, out=block)
        out[lo:hi] = block
    return out


def synthesize_planetlab(
    days: Sequence[str | os.PathLike[str]],
    n: int,
    seed: int = 0,
    *,
    scale_sigma: float = 0.2,
    integer: bool = False,
) -> np.ndarray:
    """Read the PlanetLab days and resample them to `n` VMs: an (n, 288) array of CPU %."""
    return resample_shapes(load_shapes(days), n, seed, scale_sigma=scale_sigma, integer=integer)


def write_planetlab_dir(util: np.ndarray, directory: str | os.PathLike[str], prefix: str = "vm") -> Path:
    """Write (N, 288) CPU % as a PlanetLab-format directory (one file per VM, whole percents).

    File names sort in VM order (zero-padded), so readers that sort names keep the row order.
    """
    a = np.asarray(util)
    if a.ndim != 2 or a.shape[1] != SAMPLES:
        raise InvalidInputError(f"expected an (N, {SAMPLES}) array, got shape {a.shape}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ints = np.clip(np.rint(a), 0, 100).astype(np.int64)
    width = max(1, len(str(len(ints) - 1)))
    for i, row in enumerate(ints):
        (d / f"{prefix}{i:0{width}d}").write_text("\n".join(map(str, row.tolist())) + "\n")
    return d
