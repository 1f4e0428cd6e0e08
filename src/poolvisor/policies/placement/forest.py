"""Stacked two-level max trees over hosts, one row per placement class, array-backed.

Level 0 holds one value per host and row (-inf = not a candidate); level 1 holds the max of each
block of `fanout` leaves (and, for explanations, the min of its candidate leaves), and the root is
the max of level 1. `count[t]` is the number of candidate leaves of row t. This is a B-tree of
height 2 with B ~ sqrt(H/16): at 100k hosts an update re-reduces one (rows, 80) tile and a query scans
1,250 + 80 values, each in a couple of numpy calls. With per-call overhead (~1 us) dominating the
arithmetic, depth 2 is cheaper than a binary tree's 17 levels. Leaves are stored block-major,
(block, row, offset), so refreshing host h in every row writes and re-reduces one contiguous
(rows, B) tile whatever the number of rows. "First leaf >= thr" gives the lowest-index argmax
that the placement pipeline's tie-break asks for.
"""

from __future__ import annotations

import math

import numpy as np

NEG = -np.inf
POS = np.inf
# what restore_many needs: row, hosts, their leaves, the blocks touched, their maxima and minima
Excluded = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def candidate_min(tiles: np.ndarray, axis: int) -> np.ndarray:
    """Min over the candidate (> -inf) leaves along `axis`; +inf where there is none."""
    return np.where(tiles == NEG, POS, tiles).min(axis=axis)


def default_fanout(n_hosts: int) -> int:
    """~sqrt(H/16): a host update re-reduces a (rows, B) tile for every class row while a query
    scans H/B + B values of one row, so B somewhat below sqrt(H) balances the two (80 at 100k)."""
    return max(8, math.isqrt(max(n_hosts, 1) // 16))


class MaxForest:
    def __init__(self, n_hosts: int, rows: int, fanout: int | None = None):
        b = fanout or default_fanout(n_hosts)
        if b < 2:
            raise ValueError("fanout must be >= 2")
        self.fanout = b
        self.n = n_hosts
        self.n1 = max(1, -(-n_hosts // b))
        self.rows = rows
        self.l0 = np.full((self.n1, rows, b), NEG)
        self.l1 = np.full((rows, self.n1), NEG)
        self.l1min = np.full((rows, self.n1), POS)
        self.count = np.zeros(rows, dtype=np.int64)

    def grow_rows(self, rows: int) -> None:
        """More rows (classes); existing rows keep their values."""
        if rows <= self.rows:
            return
        l0 = np.full((self.n1, rows, self.fanout), NEG)
        l0[:, : self.rows] = self.l0
        l1 = np.full((rows, self.n1), NEG)
        l1[: self.rows] = self.l1
        l1min = np.full((rows, self.n1), POS)
        l1min[: self.rows] = self.l1min
        count = np.zeros(rows, dtype=np.int64)
        count[: self.rows] = self.count
        self.l0, self.l1, self.l1min, self.count, self.rows = l0, l1, l1min, count, rows

    def row(self, t: int) -> np.ndarray:
        """Row t's leaves for hosts 0..n-1 (a copy)."""
        return self.l0[:, t, :].reshape(-1)[: self.n]

    def leaf(self, t: int, h: int) -> float:
        return float(self.l0[h // self.fanout, t, h % self.fanout])

    # ---- updates -------------------------------------------------------------------------------
    def set_row(self, t: int, values: np.ndarray) -> None:
        """Replace all leaves of row t (values has one entry per host)."""
        full = np.full(self.n1 * self.fanout, NEG)
        full[: self.n] = values
        self.l0[:, t, :] = full.reshape(self.n1, self.fanout)
        self.l1[t] = self.l0[:, t, :].max(axis=1)
        self.l1min[t] = candidate_min(self.l0[:, t, :], 1)
        self.count[t] = np.count_nonzero(full != NEG)

    def set_host(self, h: int, values: np.ndarray, rows: int) -> None:
        """Leaf h of rows [0, rows) := values (shape (rows,)); refreshes its block maximum."""
        blk, off = divmod(h, self.fanout)
        tile = self.l0[blk, :rows]
        self.count[:rows] += (values != NEG).astype(np.int64) - (tile[:, off] != NEG)
        tile[:, off] = values
        self.l1[:rows, blk] = tile.max(axis=1)
        self.l1min[:rows, blk] = candidate_min(tile, 1)

    def set_hosts(self, hosts: np.ndarray, values: np.ndarray, rows: int) -> None:
        """Leaves `hosts` (distinct) of rows [0, rows) := values (shape (rows, k))."""
        blk, off = np.divmod(hosts, self.fanout)
        old = self.l0[blk, :rows, off]
        self.count[:rows] += (values.T != NEG).sum(axis=0) - (old != NEG).sum(axis=0)
        self.l0[blk, :rows, off] = values.T
        blocks = np.unique(blk)
        tiles = self.l0[blocks, :rows, :]
        self.l1[:rows, blocks] = tiles.max(axis=2).T
        self.l1min[:rows, blocks] = candidate_min(tiles, 2).T

    # ---- one-row queries and temporary exclusions --------------------------------------------
    def top(self, t: int) -> float:
        return float(self.l1[t].max())

    def bottom(self, t: int) -> float:
        """Lowest candidate leaf of row t (+inf when none)."""
        return float(self.l1min[t].min())

    def first_at_least(self, t: int, thr: float) -> int:
        """Lowest leaf index in row t with value >= thr (the caller knows one exists)."""
        s = int((self.l1[t] >= thr).argmax())
        return s * self.fanout + int((self.l0[s, t] >= thr).argmax())

    def exclude(self, t: int, h: int) -> tuple[int, int, float, float, float]:
        """Set leaf h of row t to -inf; returns what `restore` needs to undo it exactly.
        (`count` is not changed: exclusions last one query.)"""
        blk, off = divmod(h, self.fanout)
        run = self.l0[blk, t]
        saved = (t, h, float(run[off]), float(self.l1[t, blk]), float(self.l1min[t, blk]))
        run[off] = NEG
        self.l1[t, blk] = run.max()
        self.l1min[t, blk] = candidate_min(run, 0)
        return saved

    def restore(self, saved: tuple[int, int, float, float, float]) -> None:
        """Undo one `exclude`; undo several in reverse order of exclusion."""
        t, h, v0, v1, vmin = saved
        blk, off = divmod(h, self.fanout)
        self.l0[blk, t, off] = v0
        self.l1[t, blk] = v1
        self.l1min[t, blk] = vmin

    def exclude_many(self, t: int, hosts: np.ndarray) -> Excluded:
        """`exclude` for many hosts at once (a few numpy calls whatever their number)."""
        blk, off = np.divmod(hosts, self.fanout)
        blocks = np.unique(blk)
        saved = (t, hosts, self.l0[blk, t, off].copy(), blocks, self.l1[t, blocks].copy(),
                 self.l1min[t, blocks].copy())
        self.l0[blk, t, off] = NEG
        tiles = self.l0[blocks, t, :]
        self.l1[t, blocks] = tiles.max(axis=1)
        self.l1min[t, blocks] = candidate_min(tiles, 1)
        return saved

    def restore_many(self, saved: Excluded) -> None:
        t, hosts, v0, blocks, v1, vmin = saved
        blk, off = np.divmod(hosts, self.fanout)
        self.l0[blk, t, off] = v0
        self.l1[t, blocks] = v1
        self.l1min[t, blocks] = vmin
