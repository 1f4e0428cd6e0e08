"""Routing tables of a set of routers (one project), from their interfaces, static routes and
dynamic protocol: pure, no I/O. The services and the namespace dataplane both use this.

- Connected networks: every interface that is up (distance 0).
- Static routes: installed when their next hop lies in a connected network (distance 1); equal
  metrics to one prefix are multipath.
- Dynamic routes: routers running the same protocol form a routing domain; two of them are
  neighbours over each network where both have an interface up (the cost is the sending
  interface's), and every network is a prefix originated by the routers attached to it at their
  interface cost. Link-state (distance 110) uses shortest paths with ECMP; distance-vector
  (distance 120) runs Bellman-Ford rounds with poison reverse. When links are down, the
  distance-vector domain first converges with them up, then re-converges after they fail, and the
  rounds of that re-convergence are reported (what a real failure would cost). IPv4 and IPv6 are
  routed separately, each over the networks of its family.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from poolvisor.domain.addresses import Subnet
from poolvisor.policies.network.distvec import distance_vector
from poolvisor.policies.network.graph import Graph
from poolvisor.policies.network.linkstate import prefix_routes, shortest_paths
from poolvisor.policies.network.lpm import PrefixTrie

DISTANCE = {"connected": 0, "static": 1, "link-state": 110, "distance-vector": 120}
PROTOCOLS = ("link-state", "distance-vector", "static")


@dataclass(frozen=True)
class Iface:
    network: str
    subnet: Subnet
    address: int
    cost: int = 1
    up: bool = True


@dataclass(frozen=True)
class Static:
    prefix: Subnet
    nexthop: int
    metric: int = 1


@dataclass(frozen=True)
class RouterSpec:
    name: str
    protocol: str
    interfaces: tuple[Iface, ...]
    static: tuple[Static, ...] = ()


@dataclass(frozen=True, order=True)
class Hop:
    """Where a packet goes: to `nexthop` (None: the destination is on the network itself) out of
    the interface on `network`."""

    network: str
    nexthop: int | None = None


@dataclass(frozen=True)
class Route:
    prefix: Subnet
    source: str
    metric: float
    hops: tuple[Hop, ...]


@dataclass
class Tables:
    routes: dict[str, list[Route]]
    rounds: dict[str, int]  # distance-vector domain: rounds to (re-)converge
    compute_s: float
    _tries: dict[tuple[str, str], PrefixTrie[Route]] = field(default_factory=dict, repr=False)

    def lookup(self, router: str, family: str, address: int) -> Route | None:
        """The longest-prefix match in the router's table (a trie per router and family)."""
        key = (router, family)
        trie = self._tries.get(key)
        if trie is None:
            trie = PrefixTrie(32 if family == "ipv4" else 128)
            for r in self.routes.get(router, []):
                if r.prefix.family == family:
                    trie.insert(r.prefix.network, r.prefix.prefixlen, r)
            self._tries[key] = trie
        hit = trie.lookup(address)
        return hit[2] if hit is not None else None


def compute_tables(routers: Iterable[RouterSpec], *, down: Iterable[tuple[str, str]] = ()) -> Tables:
    """Every router's table. `down`: (router, network) links observed down besides the
    interfaces whose `up` is False."""
    t0 = time.perf_counter()
    specs = sorted(routers, key=lambda r: r.name)
    failed = set(down)
    best: dict[str, dict[tuple[str, int, int], list[Route]]] = {r.name: defaultdict(list) for r in specs}

    def offer(router: str, route: Route) -> None:
        best[router][(route.prefix.family, route.prefix.network, route.prefix.prefixlen)].append(route)

    for r in specs:
        for i in r.interfaces:
            if _up(r, i, failed):
                offer(r.name, Route(i.subnet, "connected", 0, (Hop(i.network),)))
        for st in r.static:
            on = [i for i in r.interfaces if _up(r, i, failed) and i.subnet.family == st.prefix.family
                  and i.subnet.contains(st.nexthop)]
            if on:
                offer(r.name, Route(st.prefix, "static", st.metric, (Hop(on[0].network, st.nexthop),)))
    rounds: dict[str, int] = {}
    for proto in ("link-state", "distance-vector"):
        for family in ("ipv4", "ipv6"):  # each family is routed over its own networks only
            domain = [RouterSpec(r.name, r.protocol,
                                 tuple(i for i in r.interfaces if i.subnet.family == family))
                      for r in specs if r.protocol == proto]
            if any(r.interfaces for r in domain):
                n_rounds = _dynamic(proto, domain, failed, offer)
                if proto == "distance-vector":
                    rounds[proto] = max(rounds.get(proto, 0), n_rounds)
    tables = {name: _select(per) for name, per in best.items()}
    return Tables(tables, rounds, time.perf_counter() - t0)


def _up(r: RouterSpec, i: Iface, failed: set[tuple[str, str]]) -> bool:
    return i.up and (r.name, i.network) not in failed


def _select(per_prefix: dict[tuple[str, int, int], list[Route]]) -> list[Route]:
    """Per prefix: the lowest administrative distance, then the lowest metric; ties are multipath."""
    out = []
    for key in sorted(per_prefix):
        cands = per_prefix[key]
        top = min((DISTANCE[c.source], c.metric) for c in cands)
        winners = [c for c in cands if (DISTANCE[c.source], c.metric) == top]
        hops = tuple(sorted({h for c in winners for h in c.hops}, key=lambda h: (h.network, h.nexthop or 0)))
        out.append(Route(winners[0].prefix, winners[0].source, winners[0].metric, hops))
    return out


def _dynamic(proto: str, domain: list[RouterSpec], failed: set[tuple[str, str]],
             offer: Callable[[str, Route], None]) -> int:
    """Offer the domain's dynamic routes; returns distance-vector rounds (0 for link-state)."""
    index = {r.name: k for k, r in enumerate(domain)}
    networks = sorted({i.network for r in domain for i in r.interfaces})
    net_index = {n: k for k, n in enumerate(networks)}
    subnet = {i.network: i.subnet for r in domain for i in r.interfaces}

    def links(include_failed: bool) -> dict[tuple[int, int], tuple[float, list[tuple[str, int]]]]:
        """(a, b) -> (cost, [(network, b's address)]): the cheapest shared networks (parallel
        links of equal cost are all kept: multipath)."""
        on_net: dict[str, list[tuple[int, Iface]]] = defaultdict(list)
        for r in domain:
            for i in r.interfaces:
                if i.up and (include_failed or (r.name, i.network) not in failed):
                    on_net[i.network].append((index[r.name], i))
        out: dict[tuple[int, int], tuple[float, list[tuple[str, int]]]] = {}
        for net in sorted(on_net):
            for a, ia in on_net[net]:
                for b, ib in on_net[net]:
                    if a == b:
                        continue
                    old = out.get((a, b))
                    if old is None or ia.cost < old[0]:
                        out[(a, b)] = (float(ia.cost), [(net, ib.address)])
                    elif ia.cost == old[0]:
                        old[1].append((net, ib.address))
        return out

    now = links(include_failed=False)
    pairs = sorted(now)
    graph = Graph.from_edges(len(domain), [a for a, _ in pairs], [b for _, b in pairs],
                             [now[p][0] for p in pairs])
    origins = [(net_index[i.network], index[r.name], float(i.cost)) for r in domain for i in r.interfaces
               if i.up and (r.name, i.network) not in failed]

    def hops(a: int, b: int) -> list[Hop]:
        return [Hop(net, addr) for net, addr in now[(a, b)][1]]

    if proto == "link-state":
        pr = prefix_routes(shortest_paths(graph), [o[0] for o in origins], [o[1] for o in origins],
                           [o[2] for o in origins], len(networks))
        for a, r in enumerate(domain):
            for p, net in enumerate(networks):
                nh = pr.nexthops(a, p)
                if nh:
                    via = tuple(h for b in nh for h in hops(a, b))
                    offer(r.name, Route(subnet[net], proto, pr.cost(a, p), via))
        return 0
    # distance-vector: converge with every configured link up, then fail the observed-down ones.
    before = links(include_failed=True)
    infinity = max(16.0, float(sum(c for c, _h in before.values())) + 1.0)
    bpairs = sorted(before)
    full = Graph.from_edges(len(domain), [a for a, _ in bpairs], [b for _, b in bpairs],
                            [before[p][0] for p in bpairs])
    res = distance_vector(full, infinity=infinity)
    if now != before:  # same edge indices: costs as they are now, vanished links down
        cost = full.cost.copy()
        for pair in bpairs:
            if pair in now:
                cost[full.edge(*pair)] = now[pair][0]
        after = replace(full, cost=cost).fail_links([p for p in bpairs if p not in now])
        res = distance_vector(after, infinity=infinity, state=res.state)
    dist = res.state.dist
    next_router = res.state.next_hop(full)
    for a, r in enumerate(domain):
        for p, net in enumerate(networks):
            cands = [(dist[a, o] + c, o) for q, o, c in origins if q == p and dist[a, o] < infinity]
            if not cands or any(o == a for q, o, _c in origins if q == p):
                continue  # unreachable, or connected here
            metric, o = min(cands)
            b = int(next_router[a, o])
            if b >= 0 and (a, b) in now:
                offer(r.name, Route(subnet[net], proto, float(metric), (hops(a, b)[0],)))
    return res.rounds


__all__ = ["DISTANCE", "PROTOCOLS", "Hop", "Iface", "Route", "RouterSpec", "Static", "Tables",
           "compute_tables"]
