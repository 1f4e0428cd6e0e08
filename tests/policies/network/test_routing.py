"""Link-state (ECMP), distance-vector and path-vector routing against independent references."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import shortest_path

from poolvisor.policies.network import Graph, distance_vector, path_vector, prefix_routes, shortest_paths
from poolvisor.policies.network.distvec import MODES


@st.composite
def graphs(draw, max_n: int = 7, integer: bool = True):
    n = draw(st.integers(2, max_n))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique=True))
    cost = st.integers(1, 5) if integer else st.floats(0.1, 10, allow_nan=False)
    return Graph.from_links(n, [(a, b, float(draw(cost))) for a, b in chosen])


def dijkstra_ref(g: Graph, s: int) -> list[float]:
    dist = [float("inf")] * g.n
    dist[s] = 0.0
    heap = [(0.0, s)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist[u]:
            continue
        for e in range(int(g.indptr[u]), int(g.indptr[u + 1])):
            if g.alive[e] and d + g.cost[e] < dist[int(g.dst[e])]:
                dist[int(g.dst[e])] = d + float(g.cost[e])
                heapq.heappush(heap, (dist[int(g.dst[e])], int(g.dst[e])))
    return dist


def first_hops_by_enumeration(g: Graph, s: int, t: int) -> set[int]:
    """First hops of every minimum-cost simple path s -> t, found by enumerating all paths."""
    best, hops = float("inf"), set()
    stack = [(s, 0.0, None, {s})]
    while stack:
        u, c, first, seen = stack.pop()
        if u == t:
            if c < best - 1e-9:
                best, hops = c, {first}
            elif abs(c - best) <= 1e-9:
                hops.add(first)
            continue
        for e in range(int(g.indptr[u]), int(g.indptr[u + 1])):
            v = int(g.dst[e])
            if g.alive[e] and v not in seen:
                stack.append((v, c + float(g.cost[e]), v if first is None else first, seen | {v}))
    return hops


@settings(max_examples=60, deadline=None)
@given(g=graphs(), data=st.data())
def test_link_state_distances_and_ecmp_next_hops(g, data):
    if data.draw(st.booleans()):
        g = g.fail_links([(0, 1)])
    ls = shortest_paths(g)
    ref = shortest_path(g.matrix(), directed=True)
    assert np.allclose(ls.dist, ref, equal_nan=False)
    for s in range(g.n):
        assert np.allclose(ls.dist[s], dijkstra_ref(g, s))
    nh = ls.next_hop_matrix()
    for s, t in itertools.permutations(range(g.n), 2):
        hops = set(ls.nexthops(s, t))
        assert hops == (first_hops_by_enumeration(g, s, t) if np.isfinite(ls.dist[s, t]) else set())
        # forwarding along the lowest next hops reaches t at the shortest-path cost, loop-free
        u, cost, seen = s, 0.0, {s}
        while np.isfinite(ls.dist[s, t]) and u != t:
            v = int(nh[u, t])
            cost += float(g.cost[g.edge(u, v)])
            assert v not in seen
            seen.add(v)
            u = v
        assert (u == t and cost == pytest.approx(ls.dist[s, t])) or not np.isfinite(ls.dist[s, t])


@settings(max_examples=40, deadline=None)
@given(g=graphs(integer=False), data=st.data())
def test_prefix_routes_take_the_cheapest_origin(g, data):
    P = 4
    entries = data.draw(st.lists(st.tuples(st.integers(0, P - 1), st.integers(0, g.n - 1),
                                           st.floats(0, 5, allow_nan=False)), max_size=10))
    pre = [p for p, _, _ in entries]
    org = [r for _, r, _ in entries]
    cst = [c for _, _, c in entries]
    ls = shortest_paths(g)
    pr = prefix_routes(ls, pre, org, cst, P)
    fh = pr.first_hop()
    for s in range(g.n):
        for p in range(P):
            opts = [ls.dist[s, r] + c for q, r, c in entries if q == p]
            want = min(opts, default=float("inf"))
            if np.isfinite(want):
                assert pr.cost(s, p) == pytest.approx(want)
            else:
                assert not np.isfinite(pr.cost(s, p))
            hops = pr.nexthops(s, p)
            for v in hops:  # each next hop continues on a cheapest path
                assert g.cost[g.edge(s, v)] + pr.cost(v, p) == pytest.approx(want)
            is_local = any(r == s and c == pytest.approx(want) for q, r, c in entries if q == p)
            assert (hops == []) == (is_local or not np.isfinite(want))
            assert fh[s, pr.group[p]] == (min(hops) if hops else -1)


@settings(max_examples=50, deadline=None)
@given(g=graphs(), mode=st.sampled_from(MODES), data=st.data())
def test_distance_vector_converges_to_link_state_and_reconverges(g, mode, data):
    inf = 1000.0
    r = distance_vector(g, infinity=inf, mode=mode)
    assert r.converged
    want = np.where(np.isfinite(ls := shortest_paths(g).dist), ls, inf)
    assert np.allclose(r.state.dist, want)
    assert r.rounds <= g.n  # Bellman-Ford: at most n - 1 rounds (+ the quiet one is not counted)
    # next hops are on shortest paths
    nh = r.state.next_hop(g)
    for s, t in itertools.permutations(range(g.n), 2):
        if want[s, t] < inf:
            assert g.cost[g.edge(s, int(nh[s, t]))] + want[int(nh[s, t]), t] == pytest.approx(want[s, t])
    # a link fails: continue from the converged tables
    a, b = data.draw(st.sampled_from([(int(u), int(v)) for u, v in zip(g.src, g.dst, strict=True)]))
    g2 = g.fail_links([(a, b)])
    r2 = distance_vector(g2, infinity=inf, mode=mode, state=r.state)
    want2 = np.where(np.isfinite(d2 := shortest_paths(g2).dist), d2, inf)
    assert r2.converged and np.allclose(r2.state.dist, want2)
    # a router fails
    dead = np.zeros(g.n, dtype=bool)
    dead[a] = True
    r3 = distance_vector(g, infinity=inf, mode=mode, state=r.state, dead=dead)
    d3 = shortest_paths(g.fail_nodes([a])).dist
    want3 = np.where(np.isfinite(d3), d3, inf)
    want3[a, a] = inf
    assert r3.converged and np.allclose(r3.state.dist, want3)


def test_count_to_infinity_is_bounded_and_poison_reverse_stops_it():
    """Chain 0-1-2, link 1-2 fails: without split horizon 0 and 1 count up to the infinity bound;
    split horizon / poison reverse learn 'unreachable' in one round."""
    chain = Graph.from_links(3, [(0, 1, 1), (1, 2, 1)])
    rounds = {}
    for mode in MODES:
        r = distance_vector(chain, infinity=16, mode=mode)
        r2 = distance_vector(chain.fail_links([(1, 2)]), infinity=16, mode=mode, state=r.state)
        assert r2.converged and r2.state.dist[0, 2] == r2.state.dist[1, 2] == 16
        rounds[mode] = r2.rounds
    assert rounds["poison-reverse"] <= 2 and rounds["split-horizon"] <= 2
    assert 10 <= rounds["none"] <= 16  # counted to infinity, stopped by the bound
    for inf in (16, 64):  # a loop of three still counts to infinity with poison reverse: bounded
        tri = Graph.from_links(4, [(0, 1, 1), (1, 2, 1), (0, 2, 1), (2, 3, 1)])
        r = distance_vector(tri, infinity=inf, mode="poison-reverse")
        r2 = distance_vector(tri.fail_links([(2, 3)]), infinity=inf, mode="poison-reverse", state=r.state)
        assert r2.converged and np.all(r2.state.dist[:3, 3] == inf)
        assert r2.rounds <= inf


# ---- path vector -------------------------------------------------------------------------------
@st.composite
def site_graphs(draw):
    n = draw(st.integers(2, 8))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    sessions = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique=True))
    return n, sessions


def bfs(n: int, sessions: list[tuple[int, int]], src: int) -> dict[int, int]:
    adj: dict[int, list[int]] = {i: [] for i in range(n)}
    for a, b in sessions:
        adj[a].append(b)
        adj[b].append(a)
    dist, frontier = {src: 0}, [src]
    while frontier:
        nxt = []
        for u in frontier:
            for v in adj[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    nxt.append(v)
        frontier = nxt
    return dist


@settings(max_examples=60, deadline=None)
@given(sg=site_graphs(), data=st.data())
def test_path_vector_shortest_loop_free_paths_and_reconvergence(sg, data):
    n, sessions = sg
    origin = {s: [f"10.{s}.0.0/16"] for s in range(n)}
    res = path_vector(range(n), sessions, origin)
    assert res.converged
    links = {frozenset(x) for x in sessions}
    for s in range(n):
        for o in range(n):
            hops = bfs(n, sessions, o)
            r = res.ribs[s].get(f"10.{o}.0.0/16")
            if s not in hops:
                assert r is None
                continue
            assert r is not None and len(r.path) == hops[s]
            full = (s, *r.path)
            assert len(set(full)) == len(full) and full[-1] == o  # loop-free, ends at the originator
            assert all(frozenset(p) in links for p in itertools.pairwise(full))
    cut = data.draw(st.sampled_from(sessions))
    left = [x for x in sessions if x != cut]
    res2 = path_vector(range(n), left, origin, start=res.ribs)
    fresh = path_vector(range(n), left, origin)
    assert res2.converged and res2.ribs == fresh.ribs


def test_local_preference_overrides_path_length_and_failures_reconverge():
    # 1 reaches 4 directly or through 2-3; it prefers routes from 2, and 2 those from 3 (local
    # pref 200; otherwise 2 would route through 1, and 1 would drop that route as a loop).
    sessions = [(1, 4), (1, 2), (2, 3), (3, 4)]
    prefs = {(1, 2): 200, (2, 3): 200}
    res = path_vector([1, 2, 3, 4], sessions, {4: ["10.4.0.0/16"]}, local_pref=prefs)
    assert res.ribs[1]["10.4.0.0/16"].path == (2, 3, 4)
    plain = path_vector([1, 2, 3, 4], sessions, {4: ["10.4.0.0/16"]})
    assert plain.ribs[1]["10.4.0.0/16"].path == (4,)
    after = path_vector([1, 2, 3, 4], [(1, 4), (1, 2), (3, 4)], {4: ["10.4.0.0/16"]},
                        local_pref=prefs, start=res.ribs)
    assert after.converged and after.ribs[1]["10.4.0.0/16"].path == (4,)
    assert after.ribs[2]["10.4.0.0/16"].path == (1, 4) and after.rounds >= 1


def test_bad_gadget_never_converges():
    """Griffin's bad gadget: each of 1, 2, 3 prefers the path through its clockwise neighbour over
    the direct one to 0; no stable assignment exists, so the rounds run out."""
    sessions = [(0, 1), (0, 2), (0, 3), (1, 2), (2, 3), (3, 1)]
    prefs = {(1, 2): 200, (2, 3): 200, (3, 1): 200}
    res = path_vector([0, 1, 2, 3], sessions, {0: ["p"]}, local_pref=prefs, max_rounds=50)
    assert not res.converged and res.rounds == 50 and min(res.history) > 0


def test_graphs_without_links():
    g = Graph.from_edges(3, [], [], [])
    ls = shortest_paths(g)
    assert np.isinf(ls.dist[0, 1]) and ls.dist[1, 1] == 0 and ls.next_hop_matrix().tolist() == [[-1] * 3] * 3
    r = distance_vector(g, infinity=16)
    assert r.converged and r.rounds == 0 and r.state.next_hop(g).tolist() == [[-1] * 3] * 3
    assert r.state.dist.tolist() == [[0, 16, 16], [16, 0, 16], [16, 16, 0]]
    pr = prefix_routes(ls, [0], [2], [1.0], 2)
    assert pr.cost(2, 0) == 1 and pr.nexthops(0, 0) == [] and not np.isfinite(pr.cost(0, 1))
    with pytest.raises(ValueError, match="positive"):
        Graph.from_links(2, [(0, 1, 0.0)])
    with pytest.raises(ValueError, match="out of range"):
        Graph.from_links(2, [(0, 2, 1.0)])
