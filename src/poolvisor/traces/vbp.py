"""Reader for VPSolver `.vbp` vector bin packing instances.

Layout (whitespace separated, one record per line): d; d capacities; m (number of item types);
then m lines of d sizes and a demand (copies of that item). Errors name the file and line.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolvisor.domain.errors import InvalidInputError


@dataclass(frozen=True)
class VbpInstance:
    name: str
    capacity: np.ndarray  # (d,)
    items: np.ndarray  # (n, d), one row per copy (types expanded by their demand)
    types: np.ndarray  # (m, d) distinct rows as written
    demand: np.ndarray  # (m,)


def _ints(source: str, lineno: int, line: str, count: int | None, what: str) -> list[int]:
    parts = line.split()
    if count is not None and len(parts) != count:
        raise InvalidInputError(f"{source}:{lineno}: expected {count} numbers ({what}), got {len(parts)}")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise InvalidInputError(f"{source}:{lineno}: {what} must be integers: {line.strip()!r}") from None
    if any(v < 0 for v in vals):
        raise InvalidInputError(f"{source}:{lineno}: {what} must be >= 0: {line.strip()!r}")
    return vals


def parse_vbp(text: str, source: str = "<input>", name: str | None = None) -> VbpInstance:
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    it = iter(lines)

    def nxt(what: str) -> tuple[int, str]:
        try:
            return next(it)
        except StopIteration:
            last = lines[-1][0] if lines else 0
            raise InvalidInputError(f"{source}:{last + 1}: unexpected end of file, expected {what}") from None

    ln, line = nxt("the number of dimensions")
    (d,) = _ints(source, ln, line, 1, "number of dimensions")
    if d < 1:
        raise InvalidInputError(f"{source}:{ln}: number of dimensions must be >= 1")
    ln, line = nxt("the capacities")
    cap = _ints(source, ln, line, d, "capacities")
    if any(c <= 0 for c in cap):
        raise InvalidInputError(f"{source}:{ln}: capacities must be > 0")
    ln, line = nxt("the number of item types")
    (m,) = _ints(source, ln, line, 1, "number of item types")
    rows = []
    for k in range(m):
        ln, line = nxt(f"item type {k + 1} of {m}")
        vals = _ints(source, ln, line, d + 1, f"{d} sizes and a demand")
        if any(v > c for v, c in zip(vals[:d], cap, strict=True)):
            raise InvalidInputError(f"{source}:{ln}: item larger than the bin capacity")
        rows.append(vals)
    extra = next(it, None)
    if extra is not None:
        raise InvalidInputError(f"{source}:{extra[0]}: unexpected data after {m} item types")
    arr = np.asarray(rows, dtype=np.int64).reshape(m, d + 1)
    types, demand = arr[:, :d].astype(np.float64), arr[:, d]
    items = np.repeat(types, demand, axis=0)
    return VbpInstance(name or Path(source).stem, np.asarray(cap, dtype=np.float64), items, types, demand)


def read_vbp(path: str | Path) -> VbpInstance:
    p = Path(path)
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise InvalidInputError(f"{p}: not a text file") from None
    return parse_vbp(text, str(p))


def iter_vbp_texts(path: str | Path) -> Iterator[tuple[str, str, str]]:
    """(name, source, text) of every .vbp file in a directory tree or a .tar(.gz) archive, sorted by name.
    Archives are read in memory: nothing is extracted."""
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.rglob("*.vbp")):
            yield f.stem, str(f), f.read_text()
        return
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    if not tarfile.is_tarfile(p):
        raise InvalidInputError(f"{p}: neither a directory nor a tar archive of .vbp files")
    found = []
    with tarfile.open(p) as tar:  # one sequential pass: seeking back in a .gz re-reads it from the start
        for m in tar:
            if m.isfile() and m.name.endswith(".vbp"):
                fh = tar.extractfile(m)
                if fh is not None:
                    found.append((Path(m.name).stem, f"{p}:{m.name}", fh.read().decode()))
    found.sort(key=lambda x: x[1])
    yield from found
