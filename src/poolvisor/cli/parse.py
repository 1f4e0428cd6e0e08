"""Parsing of `key=value,key=value` options into the maps the API expects."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from poolvisor.domain.errors import InvalidInputError

T = TypeVar("T")


def parse_map(text: str, option: str, convert: Callable[[str], T]) -> dict[str, T]:
    """'vcpu=2,memory_mib=4096' -> {'vcpu': 2.0, 'memory_mib': 4096.0}; one clear error otherwise."""
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
            out[key] = convert(value)
        except ValueError:
            raise InvalidInputError(f"{option}: {key}={value!r} is not a number") from None
    if not out:
        raise InvalidInputError(f"{option}: expected key=value pairs, got {text!r}")
    return out
