"""PlanetLab CPU traces: one file per VM, 288 integers (CPU % per 5-minute interval).

Files are read in byte-wise sorted name order (Python ``sorted(os.listdir())``), which is the
order CloudSim's reference runs use and which decides each VM's type. Names may contain spaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolvisor.domain.errors import InvalidInputError

SAMPLES = 288
INTERVAL_S = 300.0


@dataclass(frozen=True)
class PlanetLabTrace:
    """CPU utilization of N VMs: ``util`` is (N, 288) in percent (0..100), ``names`` the file names."""

    directory: Path
    names: tuple[str, ...]
    util: np.ndarray

    @property
    def vms(self) -> int:
        return len(self.names)


def _parse_file(path: Path, samples: int) -> np.ndarray:
    data = path.read_bytes()
    try:  # fast path: well-formed file
        arr = np.array(data.split(), dtype=np.int64)
        if arr.shape == (samples,) and arr.min() >= 0 and arr.max() <= 100:
            return arr.astype(np.float64)
    except ValueError:
        pass
    return _parse_file_slow(path, samples)


def _parse_file_slow(path: Path, samples: int) -> np.ndarray:
    """Line-by-line parse that names the first bad line."""
    out = np.empty(samples, dtype=np.float64)
    n = 0
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{path}: not a text file ({e.reason})") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s:
            continue
        try:
            v = int(s)
        except ValueError:
            msg = f"{path}:{lineno}: expected an integer CPU percentage, got {s!r}"
            raise InvalidInputError(msg) from None
        if v < 0 or v > 100:
            raise InvalidInputError(f"{path}:{lineno}: CPU percentage {v} outside 0..100")
        if n >= samples:
            raise InvalidInputError(f"{path}:{lineno}: more than {samples} values")
        out[n] = v
        n += 1
    if n < samples:
        raise InvalidInputError(f"{path}: {n} values, expected {samples}")
    return out


def read_planetlab(directory: str | os.PathLike[str], samples: int = SAMPLES) -> PlanetLabTrace:
    """Read every regular file of ``directory`` (sorted by name) into an (N, samples) array."""
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"PlanetLab trace directory not found: {d}")
    names = sorted(n for n in os.listdir(d) if (d / n).is_file() and not n.startswith("."))
    if not names:
        raise InvalidInputError(f"{d}: no trace files")
    util = np.empty((len(names), samples), dtype=np.float64)
    for i, n in enumerate(names):
        util[i] = _parse_file(d / n, samples)
    return PlanetLabTrace(directory=d, names=tuple(names), util=util)
