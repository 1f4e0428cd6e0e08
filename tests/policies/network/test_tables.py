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


@pytest.mark.parametrize("proto", ["link-state", "distance-vector"])
def test_each_family_is_routed_over_its_own_networks(proto):
    """An IPv6 prefix is never routed through an IPv4-only transit (its next hop must be IPv6)."""
    from poolvisor.domain.addresses import parse_ip

    def iface(net, cidr, addr):
        return Iface(net, parse_subnet(cidr), parse_ip(addr)[1])

    r1 = [iface("t4", "10.9.0.0/24", "10.9.0.1"), iface("l6a", "fd00:1::/64", "fd00:1::1")]
    r2 = [iface("t4", "10.9.0.0/24", "10.9.0.2"), iface("l6b", "fd00:2::/64", "fd00:2::1")]
    t = compute_tables([RouterSpec("r1", proto, tuple(r1)), RouterSpec("r2", proto, tuple(r2))])
    assert t.lookup("r1", "ipv6", parse_ip("fd00:2::5")[1]) is None  # no IPv6 path
    r1.append(iface("t6", "fd00:9::/64", "fd00:9::1"))
    r2.append(iface("t6", "fd00:9::/64", "fd00:9::2"))
    t = compute_tables([RouterSpec("r1", proto, tuple(r1)), RouterSpec("r2", proto, tuple(r2))])
    hit = t.lookup("r1", "ipv6", parse_ip("fd00:2::5")[1])
    assert hit is not None
    assert [(h.network, h.nexthop) for h in hit.hops] == [("t6", parse_ip("fd00:9::2")[1])]
