"""Grid points: the cartesian product of named axes, in a stable order (first axis varies slowest)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from poolvisor.domain.errors import InvalidInputError

Point = dict[str, Any]


def expand_grid(axes: Mapping[str, Sequence[Any]]) -> list[Point]:
    """All combinations of the axis values; an empty axis is an error (it would yield no point)."""
    for name, values in axes.items():
        if len(values) == 0:
            raise InvalidInputError(f"sweep axis {name!r} has no values")
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def parse_csv_list(text: str, what: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c']; empty items are rejected with a clear message."""
    items = [t.strip() for t in text.split(",")]
    if not items or any(not t for t in items):
        raise InvalidInputError(f"{what}: expected a comma-separated list, got {text!r}")
    return items


def parse_floats(text: str, what: str) -> list[float]:
    out = []
    for t in parse_csv_list(text, what):
        try:
            out.append(float(t))
        except ValueError:
            raise InvalidInputError(f"{what}: {t!r} is not a number") from None
    return out


def parse_ints(text: str, what: str) -> list[int]:
    out = []
    for t in parse_csv_list(text, what):
        try:
            out.append(int(t))
        except ValueError:
            raise InvalidInputError(f"{what}: {t!r} is not an integer") from None
    return out


def policy_params(
    policies: Sequence[str], specs: Sequence[str], no_param: frozenset[str] = frozenset()
) -> dict[str, list[float | None]]:
    """Parameter values per policy from `--params` specs.

    A spec is either `0.8,0.9` (applies to every policy without its own values) or
    `thr-mmt=0.7,0.8` (only that policy). Policies in `no_param` and policies left without values
    get a single `None` (the simulator's default parameter).
    """
    shared: list[float] = []
    own: dict[str, list[float]] = {}
    for spec in specs:
        if "=" in spec:
            name, _, values = spec.partition("=")
            name = name.strip()
            if name not in policies:
                raise InvalidInputError(f"--params {spec!r}: policy {name!r} is not in --policies")
            own.setdefault(name, []).extend(parse_floats(values, f"--params {name}"))
        else:
            shared.extend(parse_floats(spec, "--params"))
    out: dict[str, list[float | None]] = {}
    for p in policies:
        if p in no_param:
            if p in own:
                raise InvalidInputError(f"--params: policy {p!r} takes no parameter")
            out[p] = [None]
        else:
            vals = own.get(p) or shared
            out[p] = list(dict.fromkeys(vals)) if vals else [None]
    return out
