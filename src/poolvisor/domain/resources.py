"""Named resource dimensions and conversion of demand mappings to dense vectors."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import InvalidInputError

DEFAULT_RESOURCES: tuple[str, ...] = ("vcpu", "memory_mib", "disk_gib", "net_mbps", "gpu")

# Upper bound on any single quantity: keeps float64 arithmetic exact and rejects absurd input early.
MAX_QUANTITY = 1e15
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class ResourceSet:
    """An ordered set of resource names; index i is row i of every (R, H) state array."""

    names: tuple[str, ...] = DEFAULT_RESOURCES
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for n in self.names:
            if not _NAME_RE.match(n):
                raise InvalidInputError(f"invalid resource name {n!r}: use lowercase letters, digits, '_'")
        if len(set(self.names)) != len(self.names):
            raise InvalidInputError("duplicate resource names")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise InvalidInputError(
                f"unknown resource {name!r}; known: {', '.join(self.names)}"
            ) from None

    def with_extra(self, extra: Iterable[str]) -> ResourceSet:
        """This set plus custom resources (kept in order, duplicates ignored)."""
        names = list(self.names)
        for n in extra:
            if n not in self._index and n not in names:
                names.append(n)
        return ResourceSet(tuple(names))

    def vector(self, amounts: Mapping[str, float] | None, *, default: float = 0.0) -> np.ndarray:
        """Dense float64 vector from a mapping; unknown names, NaN, negatives and absurd values are errors."""
        out = np.full(len(self.names), default, dtype=np.float64)
        for name, value in (amounts or {}).items():
            out[self.index(name)] = check_quantity(name, value)
        return out

    def mapping(self, vec: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, vec, strict=True)}


def check_quantity(name: str, value: object) -> float:
    """A finite, non-negative, bounded number, or InvalidInputError naming the resource."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"resource {name!r}: quantity must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise InvalidInputError(f"resource {name!r}: quantity must be finite and >= 0, got {value!r}")
    if v > MAX_QUANTITY:
        raise InvalidInputError(f"resource {name!r}: quantity {value!r} exceeds {MAX_QUANTITY:g}")
    return v
