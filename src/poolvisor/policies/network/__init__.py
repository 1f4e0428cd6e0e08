"""Network policies: pure functions over arrays, no I/O (docs/network.md).

- `graph`: a router graph as CSR arrays with masked (failed) links and routers;
- `linkstate`: shortest paths with ECMP next hops, routes to prefixes originated by routers;
- `distvec`: distance-vector rounds (split horizon, poison reverse, infinity bound);
- `pathvec`: path-vector routing between sites (AS paths, loop prevention, local preference);
- `lpm`: longest-prefix match (binary trie; interval table for vectorized batch lookups).
"""

from poolvisor.policies.network.distvec import DvResult, DvState, distance_vector
from poolvisor.policies.network.graph import Graph
from poolvisor.policies.network.linkstate import LinkState, PrefixRoutes, prefix_routes, shortest_paths
from poolvisor.policies.network.lpm import IntervalTable, PrefixTrie
from poolvisor.policies.network.pathvec import PvResult, PvRoute, path_vector

__all__ = ["DvResult", "DvState", "Graph", "IntervalTable", "LinkState", "PrefixRoutes", "PrefixTrie",
           "PvResult", "PvRoute", "distance_vector", "path_vector", "prefix_routes", "shortest_paths"]
