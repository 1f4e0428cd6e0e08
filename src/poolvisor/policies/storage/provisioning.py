"""Thin provisioning and over-subscription: may a pool take a new volume, or grow one?

Thick volumes reserve their whole size in physical space; thin volumes consume physical space
only as they are written. The sum of all provisioned sizes may exceed physical capacity by the
pool's over-subscription ratio (1.0 = no over-subscription), never more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolSpace:
    """A pool's space in bytes (usable capacity, i.e. already divided by the replication factor)."""

    capacity: int
    provisioned: int = 0  # sum of volume sizes, thin and thick
    reserved: int = 0  # thick volumes' sizes
    thin_used: int = 0  # bytes written to thin volumes
    oversubscription: float = 1.0
    unit: str = "bytes"  # what the amounts count, for the messages

    @property
    def used(self) -> int:
        """Physical bytes taken: thick reservations plus written thin data."""
        return self.reserved + self.thin_used

    @property
    def free(self) -> int:
        """Physical bytes still free."""
        return max(0, self.capacity - self.used)

    def check(self, size: int, thin: bool) -> str | None:
        """Why a new volume (or an extension) of `size` bytes does not fit, or None if it does."""
        if size <= 0:
            return "size must be > 0"
        limit = int(self.capacity * self.oversubscription)
        if self.provisioned + size > limit:
            return (f"over-subscription limit: {self.provisioned + size} {self.unit} provisioned > "
                    f"{self.oversubscription:g} x {self.capacity}")
        if not thin and self.used + size > self.capacity:
            return f"thick volume needs {size} {self.unit}, {self.free} physically free"
        return None

    def check_write(self, new_bytes: int) -> str | None:
        """Why writing `new_bytes` of fresh data to a thin volume does not fit, or None."""
        if self.used + new_bytes > self.capacity:
            return f"pool full: {new_bytes} new {self.unit}, {self.free} physically free"
        return None

    def add(self, size: int, thin: bool) -> PoolSpace:
        """The space after adding a volume (call `check` first)."""
        return PoolSpace(self.capacity, self.provisioned + size, self.reserved + (0 if thin else size),
                         self.thin_used, self.oversubscription, self.unit)
