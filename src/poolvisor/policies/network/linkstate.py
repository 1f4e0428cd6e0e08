"""Link-state routing: every router knows the whole graph and computes shortest paths (Dijkstra,
via scipy.sparse.csgraph, all sources at once), with equal-cost multipath.

An edge u -> v is a first hop from u toward d exactly when cost(u, v) + dist(v, d) == dist(u, d):
that test, vectorized over all edges and all destinations, yields every ECMP next hop at once.
Prefixes are originated by routers (a network attached to them) at a cost; prefixes with the same
origins share one column of costs ("group"), so 10,000 prefixes on 1,000 routers cost one
(routers x groups) array, not (routers x prefixes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import dijkstra

from poolvisor.policies.network.graph import Graph

REL_TOL = 1e-9
CHUNK = 64  # destination columns per pass: the (edges x CHUNK) temporaries stay small


def _ties(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a == b within a relative tolerance (float path sums), both finite."""
    return np.isfinite(b) & (np.abs(a - b) <= REL_TOL * np.maximum(1.0, np.abs(b)))


def on_shortest_path(graph: Graph, cost: np.ndarray) -> np.ndarray:
    """(E, C) bool: edge u -> v is a first hop of a shortest path from u toward column c, i.e.
    cost(u, v) + cost[v, c] == cost[u, c] (finite, within a tolerance scaled by the largest finite
    cost), for live edges. `cost` is (n, C): each router's cost to each destination/group."""
    fin = cost[np.isfinite(cost)]
    tol = REL_TOL * max(1.0, float(fin.max()) if fin.size else 1.0)
    out = np.empty((graph.edges, cost.shape[1]), dtype=bool)
    c = graph.cost[:, None]
    with np.errstate(invalid="ignore"):
        _fill(out, graph, cost, c, tol)
    out &= graph.alive[:, None]
    return out


def _fill(out: np.ndarray, graph: Graph, cost: np.ndarray, c: np.ndarray, tol: float) -> None:
    for lo in range(0, cost.shape[1], CHUNK):
        cols = slice(lo, lo + CHUNK)
        d = cost[graph.dst, cols]
        d += c
        np.subtract(cost[graph.src, cols], d, out=d)  # inf - inf = nan: never a tie
        np.abs(d, out=d)
        np.less_equal(d, tol, out=out[:, cols])


@dataclass(frozen=True)
class LinkState:
    graph: Graph
    dist: np.ndarray  # (n, n) shortest-path costs, inf when unreachable

    def on_path(self) -> np.ndarray:
        """(E, n) bool: edge e is a first hop of a shortest path from its source to each destination."""
        g = self.graph
        on = on_shortest_path(g, self.dist)
        on[np.arange(g.edges), g.src] = False  # a router does not forward to itself
        return on

    def nexthops(self, s: int, d: int) -> list[int]:
        """Every ECMP next-hop router from s toward d (empty: s == d or unreachable)."""
        g = self.graph
        lo, hi = int(g.indptr[s]), int(g.indptr[s + 1])
        if s == d or not np.isfinite(self.dist[s, d]):
            return []
        e = np.arange(lo, hi)
        ok = g.alive[e] & _ties(g.cost[e] + self.dist[g.dst[e], d], np.full(e.size, self.dist[s, d]))
        return [int(v) for v in g.dst[e[ok]]]

    def next_hop_matrix(self) -> np.ndarray:
        """(n, n) int64: the lowest-numbered ECMP next hop from each router to each destination, -1
        for itself or an unreachable destination (what a single-path forwarding table holds)."""
        return first_hops(self.graph, self.on_path())


def shortest_paths(graph: Graph) -> LinkState:
    if graph.n == 0:
        return LinkState(graph, np.zeros((0, 0)))
    return LinkState(graph, dijkstra(graph.matrix(), directed=True))


def first_hops(graph: Graph, on: np.ndarray) -> np.ndarray:
    """Per (source, column): the lowest destination router among the source's edges marked in `on`
    (edges are grouped by source, sorted by destination), -1 where none is marked."""
    big = np.iinfo(np.int64).max
    cand = np.where(on, graph.dst[:, None], big)
    out = np.full((graph.n, on.shape[1]), -1, dtype=np.int64)
    has = graph.indptr[1:] > graph.indptr[:-1]
    if graph.edges:
        red = np.minimum.reduceat(cand, graph.indptr[:-1][has], axis=0)
        out[has] = np.where(red == big, -1, red)
    return out


@dataclass(frozen=True)
class PrefixRoutes:
    """Routes of every router to every prefix. group[p] indexes the columns of gcost/local/on."""

    state: LinkState
    group: np.ndarray  # (P,) int64
    offset: np.ndarray  # (P,) float64: the prefix's cost = gcost[:, group] + offset
    gcost: np.ndarray  # (n, G)
    local: np.ndarray  # (n, G) bool: the router itself originates the group at the best cost
    on: np.ndarray  # (E, G) bool: ECMP first hops toward the group

    def cost(self, s: int, p: int) -> float:
        return float(self.gcost[s, self.group[p]] + self.offset[p])

    def nexthops(self, s: int, p: int) -> list[int]:
        """ECMP next-hop routers of s toward prefix p; [] when s delivers it itself or cannot reach it."""
        g = int(self.group[p])
        if self.local[s, g] or not np.isfinite(self.gcost[s, g]):
            return []
        gr = self.state.graph
        lo, hi = int(gr.indptr[s]), int(gr.indptr[s + 1])
        return [int(v) for v in gr.dst[lo:hi][self.on[lo:hi, g]]]

    def first_hop(self) -> np.ndarray:
        """(n, G) int64: the lowest ECMP next hop per router and group (-1: local or unreachable)."""
        out = first_hops(self.state.graph, self.on)
        out[self.local] = -1
        return out


def prefix_routes(state: LinkState, prefix: Sequence[int] | np.ndarray, origin: Sequence[int] | np.ndarray,
                  cost: Sequence[float] | np.ndarray, n_prefixes: int) -> PrefixRoutes:
    """Routes to prefixes originated by routers: entry k says router origin[k] reaches prefix[k] at
    cost[k] (a connected network: its interface cost). A prefix nobody originates is unreachable."""
    pre = np.asarray(prefix, dtype=np.int64)
    org = np.asarray(origin, dtype=np.int64)
    cst = np.asarray(cost, dtype=np.float64)
    n = state.graph.n
    order = np.lexsort((cst, org, pre))
    pre, org, cst = pre[order], org[order], cst[order]
    # One group per distinct origin set (with costs relative to the prefix's cheapest origin).
    offset = np.full(n_prefixes, np.inf)
    np.minimum.at(offset, pre, cst)
    starts = np.flatnonzero(np.r_[True, pre[1:] != pre[:-1]]) if pre.size else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], pre.size][:starts.size]
    sig_of: dict[tuple[tuple[int, float], ...], int] = {}
    group = np.full(n_prefixes, -1, dtype=np.int64)
    members: list[tuple[tuple[int, float], ...]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        p = int(pre[a])
        sig = tuple(zip(org[a:b].tolist(), (cst[a:b] - offset[p]).tolist(), strict=True))
        gid = sig_of.get(sig)
        if gid is None:
            gid = sig_of[sig] = len(members)
            members.append(sig)
        group[p] = gid
    unreach = group < 0
    if unreach.any():  # one shared column of inf for prefixes nobody originates
        group[unreach] = len(members)
        members.append(())
        offset[unreach] = 0.0
    gcost = np.full((n, len(members)), np.inf)
    local = np.zeros((n, len(members)), dtype=bool)
    single = [(gid, sig[0][0], sig[0][1]) for gid, sig in enumerate(members) if len(sig) == 1]
    if single:  # vectorized for the common case of one origin per prefix
        gids, routers, costs = (np.array(x) for x in zip(*single, strict=True))
        gcost[:, gids] = state.dist[:, routers] + costs
        local[routers, gids] = True
    for gid, sig in enumerate(members):
        if len(sig) > 1:
            routers = np.array([r for r, _ in sig])
            costs = np.array([c for _, c in sig])
            cand = state.dist[:, routers] + costs
            gcost[:, gid] = cand.min(axis=1)
            best_local = cand[routers, np.arange(routers.size)] <= gcost[routers, gid] + REL_TOL
            local[routers[best_local], gid] = True
    g = state.graph
    on = on_shortest_path(g, gcost)
    on &= ~local[g.src]
    return PrefixRoutes(state, group, offset, gcost, local, on)
