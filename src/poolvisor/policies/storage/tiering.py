"""Tiering: move cold volumes to a slower device class while it has room.

Classes are ordered fastest first. A volume is cold when it has not been accessed for
`cold_after` seconds; cold volumes are demoted one class at a time, coldest first, as long as
the next slower class has free space. Pure: returns the moves, performs none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def demotions(sizes: npt.ArrayLike, idle_s: npt.ArrayLike, tier: npt.ArrayLike,
              free: Sequence[int], cold_after: float) -> list[tuple[int, int]]:
    """(volume index, target tier) for cold volumes, coldest first, within the slower tier's free."""
    size = np.asarray(sizes, dtype=np.int64)
    idle = np.asarray(idle_s, dtype=np.float64)
    cur = np.asarray(tier, dtype=np.int64)
    room = [int(f) for f in free]
    slowest = len(room) - 1
    cold = np.flatnonzero((idle >= cold_after) & (cur < slowest))
    moves: list[tuple[int, int]] = []
    for v in cold[np.argsort(-idle[cold], kind="stable")]:
        target = int(cur[v]) + 1
        if size[v] <= room[target]:
            room[target] -= int(size[v])
            room[int(cur[v])] += int(size[v])
            moves.append((int(v), target))
    return moves
