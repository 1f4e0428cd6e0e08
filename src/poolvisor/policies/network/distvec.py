"""Distance-vector routing (RIP-like Bellman-Ford rounds), vectorized over edges and destinations.

Each round every router sends its table to each neighbour; the neighbour keeps, per destination,
the route through its current next hop updated to whatever that next hop now says (even when worse),
and switches to another neighbour only for a strictly better metric. Metrics are capped at
`infinity` (unreachable). Rounds are synchronous: all messages of a round are built from the tables
as they were at its start.

- split horizon: a router does not advertise a route back to the neighbour it learned it from, so
  that neighbour keeps its (stale) route until the route times out (`timeout` rounds);
- poison reverse: it advertises it back as infinity instead, which kills it at once;
- without either, two routers can bounce a dead route between them, counting up to infinity.

Loops of three or more routers can still count to infinity with poison reverse: the infinity bound
is what stops them. The state is kept per edge (`via`: the edge index of the next hop), so a failed
link invalidates exactly the routes through it, and a later run continues from a converged state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from poolvisor.policies.network.graph import Graph

Mode = Literal["none", "split-horizon", "poison-reverse"]
MODES: tuple[Mode, ...] = ("none", "split-horizon", "poison-reverse")


@dataclass(frozen=True)
class DvState:
    dist: np.ndarray  # (n, n) metric, == infinity when unreachable
    via: np.ndarray  # (n, n) int64 edge index of the next hop; -1 for itself / no route
    age: np.ndarray  # (n, n) int64 rounds since the route was last confirmed by its next hop

    def next_hop(self, graph: Graph) -> np.ndarray:
        """(n, n) next-hop routers (-1: none)."""
        if not graph.edges:
            return np.full(self.via.shape, -1, dtype=np.int64)
        return np.where(self.via >= 0, graph.dst[np.maximum(self.via, 0)], -1)


@dataclass(frozen=True)
class DvResult:
    state: DvState
    rounds: int  # rounds until the tables stopped changing
    converged: bool
    messages: int  # route entries sent over live links in all rounds


def initial_state(n: int, infinity: float) -> DvState:
    dist = np.full((n, n), float(infinity))
    np.fill_diagonal(dist, 0.0)
    return DvState(dist, np.full((n, n), -1, dtype=np.int64), np.zeros((n, n), dtype=np.int64))


def distance_vector(graph: Graph, *, infinity: float = 16.0, mode: Mode = "poison-reverse",
                    timeout: int = 6, state: DvState | None = None, max_rounds: int = 10_000,
                    dead: np.ndarray | None = None, block: int = 256) -> DvResult:
    """Run rounds until no table changes (and no stale route waits for its timeout).

    `state`: continue from a previous result (e.g. converged before a failure); routes through
    edges that are no longer alive are dropped at once (the router sees its link go down).
    `dead`: (n,) bool routers that are down: they neither send nor keep routes. Destinations are
    independent, so they are run `block` columns at a time (bounded memory); `rounds` is the
    largest number any destination needed."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    if not infinity > 0 or not np.isfinite(infinity):
        raise ValueError("infinity must be finite and positive")
    n, inf = graph.n, float(infinity)
    st = state or initial_state(n, inf)
    dist, via, age = st.dist.copy(), st.via.copy(), st.age.copy()
    down = np.zeros(n, dtype=bool) if dead is None else np.asarray(dead, dtype=bool)
    alive = graph.alive & ~down[graph.src] & ~down[graph.dst]
    # A link that went down: its router drops the routes through it now (link-down detection).
    lost = (via >= 0) & ~alive[np.maximum(via, 0)] if graph.edges else via >= 0
    dist[lost], via[lost], age[lost] = inf, -1, 0
    dist[down], via[down], age[down] = inf, -1, 0
    dist[:, down], via[:, down], age[:, down] = inf, -1, 0
    up = np.flatnonzero(~down)
    dist[up, up] = 0.0
    rounds, messages, converged = 0, 0, True
    for lo in range(0, n if graph.edges else 0, max(1, block)):  # no link: nothing to learn
        cols = np.arange(lo, min(n, lo + block))
        r, msg, ok = _run(graph, alive, down, cols, dist, via, age, inf, mode, timeout, max_rounds)
        rounds, messages, converged = max(rounds, r), messages + msg, converged and ok
    return DvResult(DvState(dist, via, age), rounds, converged, messages)


def _run(graph: Graph, alive: np.ndarray, down: np.ndarray, cols: np.ndarray, dist_all: np.ndarray,
         via_all: np.ndarray, age_all: np.ndarray, inf: float, mode: Mode, timeout: int,
         max_rounds: int) -> tuple[int, int, bool]:
    """Rounds for the destination columns `cols` (updated in place in the *_all arrays)."""
    n, k = graph.n, cols.size
    src, dst, cost = graph.src, graph.dst, graph.cost
    dist, via, age = dist_all[:, cols], via_all[:, cols], age_all[:, cols]
    e_idx = np.arange(graph.edges)
    has_edges = graph.indptr[1:] > graph.indptr[:-1]
    seg = graph.indptr[:-1][has_edges]
    big = np.iinfo(np.int64).max
    kk = np.arange(k)[None, :]
    self_rows = cols  # router cols[j] is destination j itself
    rounds = messages = 0
    converged = False
    for _ in range(max_rounds):
        # Edge e = x -> v: x hears v's table. v learned d from x when via[v, d] is the edge v -> x.
        adv = dist[dst]  # (E, k), a copy
        vv = via[dst]
        back = (vv >= 0) & (dst[np.maximum(vv, 0)] == src[:, None])
        heard = np.repeat(alive[:, None], k, axis=1)
        if mode == "poison-reverse":
            adv[back] = inf
        elif mode == "split-horizon":
            heard &= ~back
        messages += int(heard.sum())
        m = np.minimum(cost[:, None] + adv, inf)
        m[~heard] = inf
        # The current next hop's word replaces the route (or, when silent, the route ages).
        has_via = via >= 0
        own = np.maximum(via, 0)
        said = has_via & heard[own, kk]
        new_dist = np.where(said, m[own, kk], dist)
        new_age = np.where(has_via & ~said, age + 1, 0)
        expired = has_via & (new_age > timeout)
        new_dist[expired] = inf
        new_via = np.where(expired | (new_dist >= inf), -1, via)
        # A strictly better route through another neighbour wins (ties: the lowest neighbour).
        best = np.full((n, k), inf)
        arg = np.full((n, k), -1, dtype=np.int64)
        if seg.size:
            best[has_edges] = np.minimum.reduceat(m, seg, axis=0)
            cand = np.where((m <= best[src]) & (m < inf), e_idx[:, None], big)
            red = np.minimum.reduceat(cand, seg, axis=0)
            arg[has_edges] = np.where(red == big, -1, red)
        better = (best < new_dist) & (arg >= 0)
        new_dist = np.where(better, best, new_dist)
        new_via = np.where(better, arg, new_via)
        new_age = np.where(better, 0, new_age)
        new_dist[self_rows, np.arange(k)] = np.where(down[cols], inf, 0.0)
        new_via[self_rows, np.arange(k)] = -1
        new_dist[down] = inf
        new_via[new_dist >= inf] = -1
        new_age[new_via < 0] = 0
        changed = not (np.array_equal(new_dist, dist) and np.array_equal(new_via, via))
        stale = bool((new_age > 0).any())
        dist, via, age = new_dist, new_via, new_age
        if not changed and not stale:
            converged = True
            break
        rounds += 1  # something changed, or a stale route's timer is still running
    dist_all[:, cols], via_all[:, cols], age_all[:, cols] = dist, via, age
    return rounds, messages, converged
