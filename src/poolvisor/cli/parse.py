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


RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str, option: str = "--rate-limit") -> float:
    """'10', '10/s', '600/m' or '3600/h' -> requests per second (finite, > 0)."""
    value, _, unit = str(text).strip().partition("/")
    unit = unit.strip().lower() or "s"
    try:
        n = number(value)
    except ValueError:
        n = math.nan
    if unit not in RATE_UNITS or not math.isfinite(n) or n <= 0:
        raise InvalidInputError(f"{option}: expected a positive rate like 10, 10/s, 600/m or 3600/h, "
                                f"got {text!r}")
    return n / RATE_UNITS[unit]


def default_burst(rate_per_s: float) -> int:
    """The bucket size when none is given: one second's worth of requests, at least 1."""
    return max(1, math.ceil(rate_per_s))
