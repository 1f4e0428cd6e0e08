"""A router graph as columnar arrays: directed edges sorted by source (CSR), one cost each.

Links are bidirectional (one edge each way, each with its own cost: the cost of the interface the
packet leaves on). Edge indices are stable: a failed link or router is masked out (`alive`), never
removed, so a routing state computed before a failure still refers to the same edges after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Graph:
    n: int
    src: np.ndarray  # (E,) int64, non-decreasing
    dst: np.ndarray  # (E,) int64
    cost: np.ndarray  # (E,) float64, > 0
    alive: np.ndarray  # (E,) bool
    indptr: np.ndarray  # (n + 1,) edges of node u are indptr[u]:indptr[u + 1]

    @classmethod
    def from_edges(cls, n: int, src: Iterable[int], dst: Iterable[int], cost: Iterable[float]) -> Graph:
        """Directed edges; parallel edges keep the cheapest, self-loops are dropped."""
        s = np.asarray(list(src) if not isinstance(src, np.ndarray) else src, dtype=np.int64)
        d = np.asarray(list(dst) if not isinstance(dst, np.ndarray) else dst, dtype=np.int64)
        c = np.asarray(list(cost) if not isinstance(cost, np.ndarray) else cost, dtype=np.float64)
        if not (s.shape == d.shape == c.shape):
            raise ValueError("src, dst and cost differ in length")
        if s.size and (s.min() < 0 or d.min() < 0 or s.max() >= n or d.max() >= n):
            raise ValueError("edge endpoint out of range")
        if c.size and (not np.all(np.isfinite(c)) or c.min() <= 0):
            raise ValueError("link costs must be finite and positive")
        keep = s != d
        s, d, c = s[keep], d[keep], c[keep]
        order = np.lexsort((c, d, s))  # by source, then destination, cheapest first
        s, d, c = s[order], d[order], c[order]
        first = np.ones(s.size, dtype=bool)
        first[1:] = (s[1:] != s[:-1]) | (d[1:] != d[:-1])
        s, d, c = s[first], d[first], c[first]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.add.at(indptr, s + 1, 1)
        return cls(n, s, d, c, np.ones(s.size, dtype=bool), np.cumsum(indptr))

    @classmethod
    def from_links(cls, n: int, links: Iterable[tuple[int, int, float]]) -> Graph:
        """Undirected links (a, b, cost): one edge each way with the same cost."""
        arr = np.asarray(list(links), dtype=np.float64).reshape(-1, 3)
        a, b, c = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]
        return cls.from_edges(n, np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([c, c]))

    @property
    def edges(self) -> int:
        return int(self.src.size)

    def edge(self, u: int, v: int) -> int:
        """Index of the edge u -> v (-1 when there is none)."""
        lo, hi = int(self.indptr[u]), int(self.indptr[u + 1])
        i = lo + int(np.searchsorted(self.dst[lo:hi], v))
        return i if i < hi and int(self.dst[i]) == v else -1

    def fail_links(self, pairs: Iterable[tuple[int, int]]) -> Graph:
        """The graph with the links u-v (both directions) down."""
        alive = self.alive.copy()
        for u, v in pairs:
            for e in (self.edge(u, v), self.edge(v, u)):
                if e >= 0:
                    alive[e] = False
        return replace(self, alive=alive)

    def fail_nodes(self, nodes: Iterable[int]) -> Graph:
        """The graph with these routers down (every edge to or from them)."""
        dead = np.zeros(self.n, dtype=bool)
        dead[list(nodes)] = True
        return replace(self, alive=self.alive & ~dead[self.src] & ~dead[self.dst])

    def matrix(self) -> sp.csr_matrix:
        """The live edges as a sparse (n, n) cost matrix (for scipy.sparse.csgraph)."""
        m = self.alive
        return sp.csr_matrix((self.cost[m], (self.src[m], self.dst[m])), shape=(self.n, self.n))
