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
- Path-vector (distance 20, like eBGP): every path-vector router is an autonomous system (its
  `asn`); two of them hold a session over each network where both have an interface up, each
  originates its connected networks, and routes carry their AS path (loops dropped; an import
  policy `local_pref` per neighbour router ranks routes first, then the shorter AS path). The
  metric is the AS-path length; the next hop is the neighbour's address on the cheapest shared
  network. Like distance-vector, it converges with every link up first, then re-converges without
  the failed ones, and reports those rounds.
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
from poolvisor.policies.network.pathvec import path_vector

DISTANCE = {"connected": 0, "static": 1, "path-vector": 20, "link-state": 110, "distance-vector": 120}
PROTOCOLS = ("link-state", "distance-vector", "path-vector", "static")
PRIVATE_ASN = 4_200_000_000  # first private 4-byte AS number: the default of router k is this + k


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
    asn: int | None = None  # path-vector: the router's AS number (unique among the project's routers)
    local_pref: tuple[tuple[str, int], ...] = ()  # path-vector import policy: (neighbour router, pref)


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
    as_path: tuple[int, ...] = ()  # path-vector: the AS numbers the route crossed, nearest first


@dataclass
class Tables:
    routes: dict[str, list[Route]]
    rounds: dict[str, int]  # distance-vector and path-vector domains: rounds to (re-)converge
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
    for proto in ("link-state", "distance-vector", "path-vector"):
        for family in ("ipv4", "ipv6"):  # each family is routed over its own networks only
            domain = [replace(r, interfaces=tuple(i for i in r.interfaces if i.subnet.family == family),
                              static=()) for r in specs if r.protocol == proto]
            if any(r.interfaces for r in domain):
                if proto == "path-vector":
                    n_rounds = _path_vector(domain, failed, offer)
                else:
                    n_rounds = _dynamic(proto, domain, failed, offer)
                if proto != "link-state":
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
        out.append(Route(winners[0].prefix, winners[0].source, winners[0].metric, hops, winners[0].as_path))
    return out


def _path_vector(domain: list[RouterSpec], failed: set[tuple[str, str]],
                 offer: Callable[[str, Route], None]) -> int:
    """Offer the domain's path-vector routes (pathvec.path_vector); returns the rounds of the last
    run (the re-convergence when links are down)."""
    asn = {r.name: r.asn if r.asn is not None else PRIVATE_ASN + k for k, r in enumerate(domain)}
    if len(set(asn.values())) != len(asn):
        raise ValueError("path-vector routers of one project need distinct AS numbers")
    by_asn = {a: n for n, a in asn.items()}
    subnet = {i.network: i.subnet for r in domain for i in r.interfaces}

    def sessions(include_failed: bool) -> dict[tuple[int, int], list[tuple[int, str, int]]]:
        """(a, b) -> [(a's cost, network, b's address)] over the networks both have up."""
        on_net: dict[str, list[tuple[str, Iface]]] = defaultdict(list)
        for r in domain:
            for i in r.interfaces:
                if i.up and (include_failed or (r.name, i.network) not in failed):
                    on_net[i.network].append((r.name, i))
        out: dict[tuple[int, int], list[tuple[int, str, int]]] = defaultdict(list)
        for net in sorted(on_net):
            for a, ia in on_net[net]:
                for b, ib in on_net[net]:
                    if a != b:
                        out[(asn[a], asn[b])].append((ia.cost, net, ib.address))
        return out

    def originate(include_failed: bool) -> dict[int, list[str]]:
        return {asn[r.name]: [i.network for i in r.interfaces
                              if i.up and (include_failed or (r.name, i.network) not in failed)]
                for r in domain}

    prefs = {(asn[r.name], asn[nb]): pref for r in domain for nb, pref in r.local_pref if nb in asn}
    before = sessions(include_failed=True)
    res = path_vector(asn.values(), before, originate(True), local_pref=prefs)
    now = sessions(include_failed=False)
    if now.keys() != before.keys() or originate(False) != originate(True):
        res = path_vector(asn.values(), now, originate(False), local_pref=prefs, start=res.ribs)
    for a, rib in res.ribs.items():
        for net, route in sorted(rib.items()):
            nb = route.neighbour
            if nb is None or (a, nb) not in now:
                continue  # originated here (connected), or a session that is gone
            cost, via, addr = min(now[(a, nb)])
            offer(by_asn[a], Route(subnet[net], "path-vector", float(len(route.path)), (Hop(via, addr),),
                                   route.path))
    return res.rounds


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


__all__ = ["DISTANCE", "PRIVATE_ASN", "PROTOCOLS", "Hop", "Iface", "Route", "RouterSpec", "Static", "Tables",
           "compute_tables"]
