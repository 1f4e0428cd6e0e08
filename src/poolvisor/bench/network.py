"""`poolvisor bench network`: route computation, re-convergence, longest-prefix lookups and IPAM.

- route_compute_s (best of 3, with the CPU seconds of that run): link-state over `routers`
  routers (a ring plus random chords, ~8 links each, costs 1..10) and `prefixes` prefixes each
  originated by a random router: all-pairs shortest paths, ECMP first hops, routes of every router
  to every prefix;
- reconverge_s: the same after one link fails (a full recomputation);
- dv_*: distance-vector rounds (poison reverse) on `dv_routers` routers, from scratch and after the
  failure of one link, continuing from the converged tables;
- lookups_per_s: batched longest-prefix lookups (interval table, np.searchsorted) of `lookups`
  random IPv4 addresses in a table of `prefixes` prefixes (/8../32), checked against the trie on a
  sample; trie_lookups_per_s: single lookups in the binary trie;
- allocations_per_s: IPAM allocations of one address, one transaction each, on SQLite (a /8 pool);
  block_s: one request for `block` addresses; in_tx_per_s: `in_tx` single allocations in one
  transaction (the interval operations without the per-transaction commit).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.policies.network import (
    Graph,
    IntervalTable,
    PrefixTrie,
    distance_vector,
    prefix_routes,
    shortest_paths,
)


def ring_with_chords(n: int, degree: int, rng: np.random.Generator) -> Graph:
    a = np.arange(n)
    chords = max(0, n * degree // 2 - n)
    ca, cb = rng.integers(0, n, chords), rng.integers(0, n, chords)
    src = np.concatenate([a, ca])
    dst = np.concatenate([(a + 1) % n, cb])
    cost = rng.integers(1, 11, src.size).astype(np.float64)
    return Graph.from_edges(n, np.concatenate([src, dst]), np.concatenate([dst, src]),
                            np.concatenate([cost, cost]))


def _best(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """(best wall seconds, CPU seconds of that run, result) over `repeat` runs."""
    best: tuple[float, float, Any] | None = None
    for _ in range(max(1, repeat)):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        run = (time.perf_counter() - w, time.process_time() - c, out)
        if best is None or run[0] < best[0]:
            best = run
    assert best is not None
    return best


def routing(routers: int, prefixes: int, dv_routers: int, seed: int, repeat: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    g = ring_with_chords(routers, 8, rng)
    origin = rng.integers(0, routers, prefixes)
    pre = np.arange(prefixes)
    cost = np.ones(prefixes)

    def compute(graph: Graph) -> np.ndarray:
        return prefix_routes(shortest_paths(graph), pre, origin, cost, prefixes).first_hop()

    wall, cpu, fh = _best(lambda: compute(g), repeat)
    g2 = g.fail_links([(0, 1)])
    wall2, cpu2, fh2 = _best(lambda: compute(g2), repeat)
    d = ring_with_chords(dv_routers, 8, np.random.default_rng(seed + 1))
    inf = float(d.cost.sum()) + 1
    dv_wall, _c, dv = _best(lambda: distance_vector(d, infinity=inf), 1)
    d2 = d.fail_links([(0, 1)])
    dv2_wall, _c, dv2 = _best(lambda: distance_vector(d2, infinity=inf, state=dv.state), 1)
    return {"routers": routers, "links": g.edges // 2, "prefixes": prefixes, "route_groups": int(fh.shape[1]),
            "route_compute_s": wall, "route_compute_cpu_s": cpu, "reconverge_s": wall2,
            "reconverge_cpu_s": cpu2,
            "first_hops_changed": int((fh2 != fh).sum()),
            "dv_routers": dv_routers, "dv_rounds": dv.rounds, "dv_s": dv_wall,
            "dv_reconverge_rounds": dv2.rounds, "dv_reconverge_s": dv2_wall,
            "dv_converged": bool(dv.converged and dv2.converged)}


def lookups(prefixes: int, n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    plens = rng.integers(8, 33, prefixes)
    shift = (32 - plens).astype(np.uint64)
    nets = (rng.integers(0, 1 << 32, prefixes, dtype=np.uint64) >> shift) << shift
    t0 = time.perf_counter()
    table = IntervalTable(32, nets.tolist(), plens.tolist())
    t1 = time.perf_counter()
    q = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    q[: n // 2] = nets[rng.integers(0, prefixes, n // 2)] + rng.integers(0, 256, n // 2, dtype=np.uint64)
    t2 = time.perf_counter()
    got = table.lookup(q)
    t3 = time.perf_counter()
    trie: PrefixTrie[int] = PrefixTrie(32)
    for i, (a, p) in enumerate(zip(nets.tolist(), plens.tolist(), strict=True)):
        trie.insert(a, p, i)
    sample = q[: min(n, 100_000)].tolist()
    t4 = time.perf_counter()
    ref = [(h[2] if (h := trie.lookup(a)) is not None else -1) for a in sample]
    t5 = time.perf_counter()
    mismatches = int(np.sum(np.asarray(ref) != got[: len(sample)]))
    return {"lookups": n, "table_prefixes": prefixes, "table_intervals": len(table), "build_s": t1 - t0,
            "lookups_per_s": n / (t3 - t2), "trie_lookups_per_s": len(sample) / (t5 - t4),
            "lookup_mismatches": mismatches, "matched": int((got >= 0).sum())}


def ipam(allocations: int, block: int, in_tx: int) -> dict[str, Any]:
    from poolvisor.services import ipam as iv
    from poolvisor.services import open_services
    from poolvisor.store.rows import IpPoolRow

    with tempfile.TemporaryDirectory() as d:
        svc = open_services(f"sqlite:///{Path(d) / 'ipam.db'}")
        try:
            svc.catalog.create_project("bench")
            svc.networks.create_ip_pool("bench", "ten", "10.0.0.0/8")
            t0 = time.perf_counter()
            for _ in range(allocations):
                svc.networks.allocate_ip("bench", "ten")
            t1 = time.perf_counter()
            got = svc.networks.allocate_ip("bench", "ten", count=block)
            t2 = time.perf_counter()

            def many(s: Any) -> int:
                p = s.query(IpPoolRow).filter_by(name="ten").one()
                info = iv.info(p)
                for _ in range(in_tx):
                    iv.allocate_next(s, info, 1)
                return in_tx

            t3 = time.perf_counter()
            svc.store.run(many)
            t4 = time.perf_counter()
            ok = svc.networks.check_ipam() == []
            free = svc.networks.get_ip_pool("bench", "ten").free
        finally:
            svc.close()
    return {"allocations": allocations, "allocations_per_s": allocations / (t1 - t0), "block": block,
            "block_ranges": len(got), "block_s": t2 - t1, "in_tx": in_tx, "in_tx_per_s": in_tx / (t4 - t3),
            "pool_free_after": free, "intervals_ok": ok}


def run(routers: int = 1000, prefixes: int = 10_000, lookups_n: int = 1_000_000, dv_routers: int = 200,
        allocations: int = 1000, block: int = 100_000, in_tx: int = 5000, seed: int = 0) -> dict[str, Any]:
    return {**routing(routers, prefixes, dv_routers, seed), **lookups(prefixes, lookups_n, seed),
            **ipam(allocations, block, in_tx)}
