"""Stacked two-level max trees over hosts, one row per placement class, array-backed.

Level 0 holds one value per host and row (-inf = not a candidate); level 1 holds the max of each
block of `fanout` leaves (and, for explanations, the min of its candidate leaves), and the root is
the max of level 1. `count[t]` is the number of candidate leaves of row t. This is a B-tree of
height 2 with B ~ sqrt(H/16): at 100k hosts an update re-reduces one (rows, 80) tile and a query scans
1,250 + 80 values, each in a couple of numpy calls. With per-call overhead (~1 us) dominating the
arithmetic, depth 2 is cheaper than a binary tree's 17 levels. Leaves are stored block-major,
(block, row, offset), so refreshing host h in every row writes and re-reduces one contiguous
(rows, B) tile whatever the number of rows. "First leaf >= thr" gives the lowest-index argmax
that the placement pipeline's tie-break asks for. Level 2 (max and min per group of ~sqrt(n1)
blocks) lets the compiled served ranking find a row's extremes without a pass over every block.
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
    l0: np.ndarray
    l1x: np.ndarray
    l2x: np.ndarray
    count: np.ndarray

    def __init__(self, n_hosts: int, rows: int, fanout: int | None = None):
        b = fanout or default_fanout(n_hosts)
        if b < 2:
            raise ValueError("fanout must be >= 2")
        self.fanout = b
        self.n = n_hosts
        self.n1 = max(1, -(-n_hosts // b))
        # level 2 (for the compiled served ranking): the max and min of groups of fanout2 blocks,
        # so a row's extremes are a pass over ~sqrt(n1) values instead of n1
        self.fanout2 = max(2, math.isqrt(self.n1))
        self.n2 = -(-self.n1 // self.fanout2)
        self._starts = np.arange(0, self.n1, self.fanout2)
        self.rows = 0
        self._alloc(rows)

    def _alloc(self, rows: int) -> None:
        """Arrays for `rows` rows, the first self.rows copied from the current ones. Level 1 and 2
        keep max and min in one array each (l1x = [l1, l1min], l2x = [l2, l2min]): the compiled
        kernels then take half as many arguments."""
        old = self.rows
        l0 = np.full((self.n1, rows, self.fanout), NEG)
        l1x = np.empty((2, rows, self.n1))
        l1x[0], l1x[1] = NEG, POS
        l2x = np.empty((2, rows, self.n2))
        l2x[0], l2x[1] = NEG, POS
        count = np.zeros(rows, dtype=np.int64)
        if old:
            l0[:, :old] = self.l0
            l1x[:, :old] = self.l1x
            l2x[:, :old] = self.l2x
            count[:old] = self.count
        self.l0, self.l1x, self.l2x, self.count, self.rows = l0, l1x, l2x, count, rows
        self.l1, self.l1min = l1x[0], l1x[1]
        self.l2, self.l2min = l2x[0], l2x[1]

    def grow_rows(self, rows: int) -> None:
        """More rows (classes); existing rows keep their values."""
        if rows > self.rows:
            self._alloc(rows)

    def _level2(self, rows: slice | int, blocks: np.ndarray | None = None) -> None:
        """Level 2 of `rows` from level 1 (for the groups holding `blocks`; all when None).
        Exclusions leave it as it was: they last one query and restore level 1 exactly."""
        if blocks is None:
            self.l2[rows] = np.maximum.reduceat(self.l1[rows], self._starts, axis=-1)
            self.l2min[rows] = np.minimum.reduceat(self.l1min[rows], self._starts, axis=-1)
            return
        for j in np.unique(blocks // self.fanout2).tolist():
            part = slice(j * self.fanout2, (j + 1) * self.fanout2)
            self.l2[rows, j] = self.l1[rows, part].max(axis=-1)
            self.l2min[rows, j] = self.l1min[rows, part].min(axis=-1)

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
        self._level2(t)

    def set_host(self, h: int, values: np.ndarray, rows: int) -> None:
        """Leaf h of rows [0, rows) := values (shape (rows,)); refreshes its block maximum."""
        blk, off = divmod(h, self.fanout)
        tile = self.l0[blk, :rows]
        self.count[:rows] += (values != NEG).astype(np.int64) - (tile[:, off] != NEG)
        tile[:, off] = values
        self.l1[:rows, blk] = tile.max(axis=1)
        self.l1min[:rows, blk] = candidate_min(tile, 1)
        self._level2(slice(0, rows), np.array([blk]))

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
        self._level2(slice(0, rows), blocks)

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
