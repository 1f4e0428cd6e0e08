"""Columnar CSV reading for trace files: whole columns become numpy arrays, errors name file:line.

The fast path converts each column with one numpy call; only when that fails do we walk the
column to find the first offending line, so well-formed traces never pay for per-row Python
objects beyond the csv module's own split. Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolvisor.domain.errors import InvalidInputError


def open_text(path: Path) -> io.TextIOBase:
    """Open a (possibly gzipped) text file; missing files raise a clear InvalidInputError."""
    if not path.is_file():
        raise InvalidInputError(f"trace file not found: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")  # noqa: SIM115 - returned to the caller


@dataclass
class Columns:
    """String columns of one CSV file plus the file line number of every row."""

    path: Path
    header: tuple[str, ...]
    cols: dict[str, list[str]]
    lines: np.ndarray  # (n,) int: 1-based line number of each row in the file

    def __len__(self) -> int:
        return int(self.lines.size)

    def where(self, row: int) -> str:
        return f"{self.path}:{int(self.lines[row])}"

    def error(self, row: int, message: str) -> InvalidInputError:
        return InvalidInputError(f"{self.where(row)}: {message}")

    def text(self, name: str) -> np.ndarray:
        return np.array(self.cols[name], dtype=object)

    def number(
        self,
        name: str,
        dtype: type = np.float64,
        *,
        empty: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> np.ndarray:
        """A numeric column; blanks become ``empty`` (or are an error when it is None)."""
        raw = self.cols[name]
        vals: Sequence[str] = raw
        if empty is not None:
            vals = [v if v.strip() else repr(empty) for v in raw]
        try:
            arr = np.array(vals, dtype=np.float64)
        except ValueError:
            arr = None
        if arr is None or not np.all(np.isfinite(arr)):
            for i, v in enumerate(vals):
                try:
                    ok = np.isfinite(float(v))
                except ValueError:
                    ok = False
                if not ok:
                    shown = raw[i]
                    what = "is empty" if not shown.strip() else f"is not a number: {shown!r}"
                    raise InvalidInputError(f"{self.where(i)}: column {name!r} {what}")
            raise AssertionError("unreachable")  # pragma: no cover
        if dtype is not np.float64 and np.issubdtype(dtype, np.integer):
            bad = np.flatnonzero(arr != np.round(arr))
            if bad.size:
                i = int(bad[0])
                raise self.error(i, f"column {name!r} must be an integer, got {raw[i]!r}")
        if minimum is not None and arr.size and arr.min() < minimum:
            i = int(np.argmax(arr < minimum))
            raise self.error(i, f"column {name!r} must be >= {minimum:g}, got {raw[i]!r}")
        if maximum is not None and arr.size and arr.max() > maximum:
            i = int(np.argmax(arr > maximum))
            raise self.error(i, f"column {name!r} must be <= {maximum:g}, got {raw[i]!r}")
        return arr.astype(dtype) if dtype is not np.float64 else arr


def read_columns(
    path: str | Path,
    *,
    required: Sequence[str] = (),
    names: Sequence[str] | None = None,
    comment: str | None = None,
    min_fields: int | None = None,
) -> Columns:
    """Read a CSV into string columns.

    With ``names`` the file has no header row (or a ``comment``-prefixed one, which is skipped) and
    rows are matched to ``names`` by position; otherwise the first line is the header and every
    ``required`` column must be present. Rows with the wrong number of fields are errors.
    """
    p = Path(path)
    with open_text(p) as fh:
        reader = csv.reader(fh)
        lineno = 0
        header: tuple[str, ...]
        if names is None:
            try:
                first = next(reader)
            except StopIteration:
                raise InvalidInputError(f"{p}:1: empty file, expected a header row") from None
            except (csv.Error, UnicodeDecodeError) as e:
                raise InvalidInputError(f"{p}:1: unreadable header ({e})") from None
            lineno = reader.line_num
            header = tuple(h.strip() for h in first)
            missing = [c for c in required if c not in header]
            if missing:
                raise InvalidInputError(
                    f"{p}:1: header lacks column(s) {', '.join(missing)}; found: {', '.join(header)}"
                )
        else:
            header = tuple(names)
        width = len(header)
        need = width if min_fields is None else min_fields
        rows: list[list[str]] = []
        lines: list[int] = []
        try:
            for row in reader:
                start = lineno + 1
                lineno = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if comment is not None and row[0].startswith(comment):
                    continue
                if len(row) < need or len(row) > width:
                    expect = f"{width}" if need == width else f"{need}..{width}"
                    raise InvalidInputError(f"{p}:{start}: expected {expect} fields, got {len(row)}")
                if len(row) < width:
                    row = row + [""] * (width - len(row))
                rows.append(row)
                lines.append(start)
        except csv.Error as e:
            raise InvalidInputError(f"{p}:{reader.line_num}: malformed CSV ({e})") from None
        except UnicodeDecodeError as e:
            raise InvalidInputError(f"{p}:{lineno + 1}: not UTF-8 text ({e.reason})") from None
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    cols = {h: list(c) for h, c in zip(header, transposed, strict=True)}
    return Columns(p, header, cols, np.array(lines, dtype=np.int64))
