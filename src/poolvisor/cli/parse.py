"""Parsing of command-line numbers and `key=value,key=value` options into the maps the API expects.

Every number the CLI reads is finite: `number` is the one parser, used by `parse_map` and, as
`parser=number`, by every float option (tests/cli/test_cli_hardening.py checks each one), so
`nan`, `inf` and `1e400` are one clear error instead of a traceback or a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from poolvisor.domain.errors import InvalidInputError

T = TypeVar("T")


def number(text: str) -> float:
    """A finite float from text; ValueError (with the reason) for junk, nan, inf and overflow."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{str(text).strip()!r} is not a finite number")
    return value


def parse_map(text: str, option: str, convert: Callable[[str], T]) -> dict[str, T]:
    """'vcpu=2,memory_mib=4096' -> {'vcpu': 2.0, 'memory_mib': 4096.0}; one clear error otherwise.

    A float value must be finite whatever `convert` is (`float("nan")` is a float too)."""
    out: dict[str, T] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InvalidInputError(f"{option}: expected key=value pairs, got {part!r}")
        if key in out:
            raise InvalidInputError(f"{option}: {key!r} given twice")
        try:
            converted = convert(value)
        except ValueError:
            raise InvalidInputError(f"{option}: {key}={value!r} is not a number") from None
        if isinstance(converted, float) and not math.isfinite(converted):  # nan, inf, 1e400
            raise InvalidInputError(f"{option}: {key}={value!r} is not a finite number")
        out[key] = converted
    if not out:
        raise InvalidInputError(f"{option}: expected key=value pairs, got {text!r}")
    return out
