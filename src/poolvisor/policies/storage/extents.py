"""Extent allocation on one device's (or pool's) address space, in fixed-size units.

A volume gets one contiguous extent when a free run is long enough (first fit, address order),
otherwise a chain of the largest free runs (fewest pieces). Freed extents merge with their
neighbours. Fragmentation is 1 - largest free run / total free: 0 when all free space is one run.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

Extent = tuple[int, int]  # (start unit, length in units)


class NoSpace(Exception):
    """Not enough free units for the request."""


@dataclass
class ExtentMap:
    """Free runs of an address space of `total` units, sorted by start."""

    total: int
    starts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.total < 0:
            raise ValueError("total must be >= 0")
        if not self.starts and self.total:
            self.starts, self.lengths = [0], [self.total]

    @property
    def free(self) -> int:
        """Free units."""
        return sum(self.lengths)

    def fragmentation(self) -> float:
        """1 - largest free run / free units (0.0 with no free space)."""
        f = self.free
        return 0.0 if f == 0 else 1.0 - max(self.lengths) / f

    def allocate(self, units: int) -> list[Extent]:
        """Extents totalling `units`: one contiguous run if any fits (first fit), else a chain."""
        if units <= 0:
            raise ValueError("units must be > 0")
        if units > self.free:
            raise NoSpace(f"{units} units requested, {self.free} free")
        for i, length in enumerate(self.lengths):
            if length >= units:
                return [self._take(i, units)]
        chain: list[Extent] = []
        left = units
        while left:
            i = max(range(len(self.lengths)), key=self.lengths.__getitem__)
            n = min(left, self.lengths[i])
            chain.append(self._take(i, n))
            left -= n
        return sorted(chain)

    def extend(self, extents: list[Extent], units: int) -> list[Extent]:
        """Grow a volume by `units`: in place after its last extent when that space is free."""
        if units <= 0:
            raise ValueError("units must be > 0")
        if extents:
            start, length = extents[-1]
            i = bisect.bisect_left(self.starts, start + length)
            if i < len(self.starts) and self.starts[i] == start + length and self.lengths[i] >= units:
                self._take(i, units)
                return [*extents[:-1], (start, length + units)]
        return [*extents, *self.allocate(units)]

    def release(self, extents: list[Extent]) -> None:
        """Return extents to the free list, merging adjacent runs."""
        for start, length in extents:
            if length <= 0 or start < 0 or start + length > self.total:
                raise ValueError(f"extent {(start, length)} outside 0..{self.total}")
            i = bisect.bisect_left(self.starts, start)
            if (i < len(self.starts) and self.starts[i] < start + length) or (
                    i > 0 and self.starts[i - 1] + self.lengths[i - 1] > start):
                raise ValueError(f"extent {(start, length)} is already free")
            self.starts.insert(i, start)
            self.lengths.insert(i, length)
            if i + 1 < len(self.starts) and start + length == self.starts[i + 1]:
                self.lengths[i] += self.lengths.pop(i + 1)
                self.starts.pop(i + 1)
            if i > 0 and self.starts[i - 1] + self.lengths[i - 1] == start:
                self.lengths[i - 1] += self.lengths.pop(i)
                self.starts.pop(i)

    def _take(self, i: int, units: int) -> Extent:
        start = self.starts[i]
        if self.lengths[i] == units:
            self.starts.pop(i)
            self.lengths.pop(i)
        else:
            self.starts[i] += units
            self.lengths[i] -= units
        return (start, units)
