"""Project fair-share weights for the simulator's `drf` queue (`simulate ... --project-weights FILE`).

The live queue reads each project's weight from the store (`projects.weight`); a trace has none,
so they come from a file: JSON (an object ``{"name": weight}``) or CSV (``name,weight`` per line,
an optional ``project,weight`` header, ``#`` comments and blank lines skipped). Weights follow the
live rule (policies/queueing.py `check_weight`, which services/catalog.py applies too: a number in
(0, 1e6]; CSV numbers are decimals as written); a project the file does not name keeps weight 1,
as a live project does. Every error names the file and the line (CSV: the row's first line).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.queueing import check_weight

MAX_FILE = 64 * 1024 * 1024
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only


@dataclass(frozen=True)
class ProjectWeights:
    """Weights by project name, and where they came from (for the report)."""

    source: str
    weights: dict[str, float]

    def vector(self, project_names: Sequence[str]) -> np.ndarray:
        """(P,) the weight of each of the trace's projects (1 when the file does not name it)."""
        return np.array([self.weights.get(p, 1.0) for p in project_names], dtype=np.float64)

    def report(self, project_names: Sequence[str]) -> dict[str, object]:
        """What the replay applied: the file, how many of its projects the trace has, the others."""
        known = set(project_names)
        unknown = sorted(n for n in self.weights if n not in known)
        return {"file": self.source, "named": len(self.weights), "in_trace": len(self.weights) - len(unknown),
                "not_in_trace": unknown[:20]}


def _weight(raw: object, where: str, *, text: bool = False) -> float:
    """A weight by the live rule (policies/queueing.py `check_weight`): a JSON number, or (`text`,
    CSV) a decimal number written out (no `1_000`, `inf` or `nan`, which Python's float() reads)."""
    if text:
        if not isinstance(raw, str) or _DECIMAL.fullmatch(raw) is None:
            raise InvalidInputError(f"{where}: the weight {raw!r} is not a number")
        raw = float(raw)
    return check_weight(raw, f"{where}: the weight")


def _name(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInputError(f"{where}: a project name is required")
    return raw.strip()


def load_weights(path: Path) -> ProjectWeights:
    """Read a weights file (JSON or CSV, by its first non-blank character)."""
    try:
        if path.stat().st_size > MAX_FILE:
            raise InvalidInputError(f"{path}: a weights file is at most {MAX_FILE // (1 << 20)} MiB")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidInputError(f"{path}: cannot read the weights file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path}: the weights file is not UTF-8 text") from None
    if text.lstrip().startswith(("{", "[")):
        return ProjectWeights(str(path), _json(path, text))
    return ProjectWeights(str(path), _csv(path, text))


def _json(path: Path, text: str) -> dict[str, float]:
    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        names: set[str] = set()  # as the project is named (stripped): " a" and "a" are one project
        for k, v in items:
            if k.strip() in names:
                raise InvalidInputError(f"{path}:{_line_of(text, k)}: project {k.strip()!r} is named twice")
            names.add(k.strip())
            seen[k] = v
        return seen

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object of project name -> weight")
    out = {}
    for k, v in data.items():
        where = f"{path}:{_line_of(text, k)}"
        out[_name(k, where)] = _weight(v, f"{where}: project {k!r}")
    return out


def _line_of(text: str, key: str) -> int:
    """The line of a JSON key's first occurrence (for the error message)."""
    at = text.find(json.dumps(key))
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _csv(path: Path, text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    first, after = True, 0  # the header may only be the first row; `after`: the last line read
    for row in reader:
        lineno, after = after + 1, reader.line_num  # a quoted field may span lines: its first one
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if len(cells) != 2:
            raise InvalidInputError(f"{where}: expected 'project,weight', got {len(cells)} field(s)")
        header, first = first and cells[1].lower() == "weight", False
        if header:
            continue
        name = _name(cells[0], where)
        if name in out:
            raise InvalidInputError(f"{where}: project {name!r} is named twice")
        out[name] = _weight(cells[1], where, text=True)
    if not out:
        raise InvalidInputError(f"{path}: no 'project,weight' lines")
    return out
