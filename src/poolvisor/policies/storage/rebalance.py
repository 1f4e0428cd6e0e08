"""The replica moves a change of device set implies, and how they compare with the ideal.

Placement is a pure function of (object, device set), so a rebalance needs no record of where
data was: compute old and new placements, and move exactly the replicas that differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from poolvisor.policies.storage.placement import U64, Devices, place


@dataclass(frozen=True)
class Plan:
    """Per object: the device keys losing a replica and those gaining one (0-padded)."""

    objects: U64  # objects with at least one move
    index: npt.NDArray[np.int64]  # their positions in the input
    sources: U64  # (k, R) old replicas no longer in the new set, 0 elsewhere
    targets: U64  # (k, R) new replicas not in the old set, 0 elsewhere

    @property
    def replica_moves(self) -> int:
        """Replica copies to make (one per target slot)."""
        return int(np.count_nonzero(self.targets))


def diff(objects: U64, old: U64, new: U64) -> Plan:
    """Moves from placement `old` to `new` (both (n, R) device keys): set differences per row."""
    in_old = (new[:, :, None] == old[:, None, :]).any(axis=2)
    in_new = (old[:, :, None] == new[:, None, :]).any(axis=2)
    targets = np.where(in_old | (new == 0), np.uint64(0), new)
    sources = np.where(in_new | (old == 0), np.uint64(0), old)
    rows = np.flatnonzero((targets != 0).any(axis=1) | (sources != 0).any(axis=1))
    return Plan(objects[rows], rows, sources[rows], targets[rows])


def plan(objects: U64, before: Devices, after: Devices, replicas: int) -> Plan:
    """The moves when the device set changes from `before` to `after`."""
    return diff(objects, place(objects, before, replicas), place(objects, after, replicas))


def moved_over_ideal(objects: U64, before: Devices, after: Devices, replicas: int,
                     changed_weight: float) -> tuple[float, float]:
    """(moved fraction of replicas, moved / ideal) for one device joining or leaving.

    The ideal is the device's share of capacity: `changed_weight` over the larger total weight.
    """
    p = plan(objects, before, after, replicas)
    fraction = p.replica_moves / (len(objects) * replicas)
    total = max(float(before.weights.sum()), float(after.weights.sum()))
    ideal = changed_weight / total
    return float(fraction), float(fraction / ideal)
