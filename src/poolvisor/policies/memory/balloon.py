"""Balloon targets: reclaim guests' unused memory under pressure, give it back when it eases.

Per host, each guest has its demand (the memory it was sized for), the memory granted now (the
balloon's size; demand when not ballooned), its working set (what it actively uses) and its
reservation (never reclaimed). A guest never goes below its floor = max(reservation, working set
capped at demand): only unused memory is reclaimed, and a guest whose working set grew gets up to
its floor back first. With hysteresis between `high` and `low` (fractions of physical capacity):

* pressure (sum granted > high x capacity): shrink the least recently active guests first, each
  down to its floor at most, until the sum is <= low x capacity (or nothing more is reclaimable);
* calm (sum granted < low x capacity): give memory back, most recently active first, up to
  demand, while the sum stays <= low x capacity.

Vectorized over one host's guests (a sort and a cumulative sum), no loop over guests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Targets:
    granted: F64  # new balloon sizes
    reclaimed: float  # memory taken from guests (sum of decreases)
    returned: float  # memory given back (sum of increases, floors included)
    pressure_before: float  # sum granted / capacity, before
    pressure_after: float
    overflow: float  # sum of floors above capacity: memory the host cannot back (would swap)


def floors(demand: F64, working_set: F64, reserved: F64) -> F64:
    """The least each guest may keep: its reservation, or its working set if larger (<= demand)."""
    return np.minimum(demand, np.maximum(reserved, np.minimum(working_set, demand)))


def balloon_targets(demand: npt.ArrayLike, granted: npt.ArrayLike, working_set: npt.ArrayLike,
                    reserved: npt.ArrayLike, last_active: npt.ArrayLike, capacity: float,
                    high: float = 0.9, low: float = 0.8) -> Targets:
    """New balloon sizes for one host's guests (see the module docstring)."""
    if not 0 < low <= high:
        raise ValueError("need 0 < low <= high")
    d = np.asarray(demand, dtype=np.float64)
    g0 = np.minimum(np.asarray(granted, dtype=np.float64), d)
    floor = floors(d, np.asarray(working_set, dtype=np.float64), np.asarray(reserved, dtype=np.float64))
    active = np.asarray(last_active, dtype=np.float64)
    g = np.maximum(g0, floor)
    cap = float(capacity)
    total = float(g.sum())
    if cap > 0 and total > high * cap:
        order = np.argsort(active, kind="stable")  # least recently active first
        spare = (g - floor)[order]
        excess = total - low * cap
        before = np.cumsum(spare) - spare
        take = np.clip(excess - before, 0.0, spare)
        g[order] -= take
    elif cap > 0 and total < low * cap:
        order = np.argsort(-active, kind="stable")  # most recently active first
        room = (d - g)[order]
        budget = low * cap - total
        before = np.cumsum(room) - room
        give = np.clip(budget - before, 0.0, room)
        g[order] += give
    delta = g - g0
    return Targets(g, float(-delta[delta < 0].sum()), float(delta[delta > 0].sum()),
                   float(g0.sum() / cap) if cap > 0 else 0.0, float(g.sum() / cap) if cap > 0 else 0.0,
                   max(0.0, float(floor.sum()) - cap))
