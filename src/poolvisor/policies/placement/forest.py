"""Stacked two-level max trees over hosts, one row per placement class, array-backed.

Level 0 holds one value per host (-inf = not a candidate); level 1 holds the max of each block of
`fanout` leaves, and the root is the max of level 1. This is a B-tree of height 2 with B ~ sqrt(H):
at 100k hosts each operation touches two runs of ~320 contiguous floats, which numpy does in a
few calls. With per-call overhead (~1-2 us) dominating the arithmetic, depth 2 is cheaper than a
binary tree's 17 levels. All rows share the layout, so refreshing host h in every row is two numpy
calls whatever the number of rows. "First leaf >= thr" gives the lowest-index argmax that the
placement pipeline's tie-break asks for.
"""

from __future__ import annotations

import math

import numpy as np

NEG = -np.inf


def default_fanout(n_hosts: int) -> int:
    return max(8, math.isqrt(max(n_hosts - 1, 0)) + 1)


class MaxForest:
    def __init__(self, n_hosts: int, rows: int, fanout: int | None = None):
        b = fanout or default_fanout(n_hosts)
        if b < 2:
            raise ValueError("fanout must be >= 2")
        self.fanout = b
        self.n = n_hosts
        self.n1 = max(1, -(-n_hosts // b))
        self.n0 = self.n1 * b
        self.rows = rows
        self.l0 = np.full((rows, self.n0), NEG)
        self.l1 = np.full((rows, self.n1), NEG)

    def grow_rows(self, rows: int) -> None:
        """More rows (classes); existing rows keep their values."""
        if rows <= self.rows:
            return

        def grow(a: np.ndarray) -> np.ndarray:
            out = np.full((rows, a.shape[1]), NEG)
            out[: a.shape[0]] = a
            return out

        self.l0, self.l1 = grow(self.l0), grow(self.l1)
        self.rows = rows

    # ---- updates -------------------------------------------------------------------------------
    def set_row(self, t: int, values: np.ndarray) -> None:
        """Replace all leaves of row t (values has one entry per host)."""
        self.l0[t, : self.n] = values
        self.l0[t, self.n :] = NEG
        self.l1[t] = self.l0[t].reshape(self.n1, self.fanout).max(axis=1)

    def set_host(self, h: int, values: np.ndarray, rows: int) -> None:
        """Leaf h of rows [0, rows) := values (shape (rows,)); refreshes its block maximum."""
        b = self.fanout
        self.l0[:rows, h] = values
        lo = h - h % b
        self.l1[:rows, h // b] = self.l0[:rows, lo : lo + b].max(axis=1)

    def set_hosts(self, hosts: np.ndarray, values: np.ndarray, rows: int) -> None:
        """Leaves `hosts` (distinct) of rows [0, rows) := values (shape (rows, k))."""
        b = self.fanout
        self.l0[:rows, hosts] = values
        blocks = np.unique(hosts // b)
        self.l1[:rows, blocks] = self.l0[:rows].reshape(rows, self.n1, b)[:, blocks].max(axis=2)

    # ---- one-row queries and temporary exclusions --------------------------------------------
    def top(self, t: int) -> float:
        return float(self.l1[t].max())

    def first_at_least(self, t: int, thr: float) -> int:
        """Lowest leaf index in row t with value >= thr (the caller knows one exists)."""
        b = self.fanout
        lo = int((self.l1[t] >= thr).argmax()) * b
        return lo + int((self.l0[t, lo : lo + b] >= thr).argmax())

    def exclude(self, t: int, h: int) -> tuple[int, int, float, float]:
        """Set leaf h of row t to -inf; returns what `restore` needs to undo it exactly."""
        b = self.fanout
        saved = (t, h, float(self.l0[t, h]), float(self.l1[t, h // b]))
        self.l0[t, h] = NEG
        lo = h - h % b
        self.l1[t, h // b] = self.l0[t, lo : lo + b].max()
        return saved

    def restore(self, saved: tuple[int, int, float, float]) -> None:
        """Undo one `exclude`; undo several in reverse order of exclusion."""
        t, h, v0, v1 = saved
        self.l0[t, h] = v0
        self.l1[t, h // self.fanout] = v1

    def exclude_many(self, t: int, hosts: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray,
                                                                np.ndarray]:
        """`exclude` for many hosts at once (a few numpy calls whatever their number)."""
        b = self.fanout
        blocks = np.unique(hosts // b)
        saved = (t, hosts, self.l0[t, hosts].copy(), blocks, self.l1[t, blocks].copy())
        self.l0[t, hosts] = NEG
        self.l1[t, blocks] = self.l0[t].reshape(self.n1, b)[blocks].max(axis=1)
        return saved

    def restore_many(self, saved: tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        t, hosts, v0, blocks, v1 = saved
        self.l0[t, hosts] = v0
        self.l1[t, blocks] = v1
