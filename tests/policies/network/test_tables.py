"""Routing tables of random router/network topologies: link-state and distance-vector metrics equal
an independent shortest-path computation, and forwarding hop by hop along either table reaches
the destination network, loop-free, also after links fail."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import shortest_path

from poolvisor.domain.addresses import parse_subnet
from poolvisor.policies.network.tables import Iface, RouterSpec, compute_tables


@st.composite
def topologies(draw):
    n_nets = draw(st.integers(2, 6))
    n_routers = draw(st.integers(1, 5))
    nets = [(f"n{k}", parse_subnet(f"10.{k}.0.0/24")) for k in range(n_nets)]
    specs = []
    for r in range(n_routers):
        joined = draw(st.lists(st.integers(0, n_nets - 1), min_size=1, max_size=n_nets, unique=True))
        ifaces = tuple(Iface(nets[k][0], nets[k][1], nets[k][1].network + 1 + r, draw(st.integers(1, 4)))
                       for k in sorted(joined))
        specs.append((f"r{r}", ifaces))
    down = draw(st.lists(st.sampled_from([(name, i.network) for name, ifs in specs for i in ifs]),
                         max_size=2, unique=True))
    return specs, nets, down


def walk(tables, specs, start: str, prefix) -> bool:
    """Follow the first next hop from `start` until a connected route: True when it arrives."""
    by_addr = {i.address: name for name, ifs in specs for i in ifs}
    router, seen = start, set()
    while True:
        assert router not in seen, "forwarding loop"
        seen.add(router)
        route = next((r for r in tables.routes[router] if r.prefix == prefix), None)
        if route is None:
            return False
        if route.source == "connected":
            return True
        router = by_addr[route.hops[0].nexthop]


def expected_metrics(specs, down) -> dict[tuple[str, str], float]:
    """OSPF-style metric per (router, network) from an independent shortest-path computation: the
    cheapest router path (sending-interface costs) to a router on the network, plus that router's
    interface cost; networks a router is on itself are connected (not listed)."""
    names = [n for n, _ in specs]
    up = {(n, i.network): i for n, ifs in specs for i in ifs if (n, i.network) not in down}
    m = np.full((len(names), len(names)), np.inf)
    for a, na in enumerate(names):
        for b, nb in enumerate(names):
            shared = [up[(na, net)].cost for (r, net) in up if r == na and (nb, net) in up and a != b]
            if shared:
                m[a, b] = min(shared)
    dist = shortest_path(np.where(np.isinf(m), 0, m), directed=True)
    out = {}
    for a, na in enumerate(names):
        for (o, net), i in up.items():
            if (na, net) in up:
                continue
            c = dist[a, names.index(o)] + i.cost
            if np.isfinite(c):
                out[(na, net)] = min(out.get((na, net), np.inf), c)
    return out


@settings(max_examples=80, deadline=None)
@given(topo=topologies())
def test_link_state_and_distance_vector_agree_and_forward(topo):
    specs, nets, down = topo
    want = expected_metrics(specs, set(down))
    for proto in ("link-state", "distance-vector"):
        t = compute_tables([RouterSpec(n, proto, ifs) for n, ifs in specs], down=down)
        for name, _ifs in specs:
            for net, sub in nets:
                r = next((x for x in t.routes[name] if x.prefix == sub), None)
                if r is not None and r.source == "connected":
                    continue
                assert (r is None) == ((name, net) not in want)
                if r is not None:
                    assert r.metric == pytest.approx(want[(name, net)])
                    assert walk(t, specs, name, sub)
