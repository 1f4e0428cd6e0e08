"""`poolvisor bench network` at a small size: it runs and its self-checks hold (no timing asserted)."""

from __future__ import annotations

from poolvisor.bench import network as bn


def test_small_network_bench_is_consistent():
    out = bn.run(routers=60, prefixes=300, lookups_n=20_000, dv_routers=30, allocations=20, block=5000,
                 in_tx=50)
    assert out["lookup_mismatches"] == 0 and out["matched"] > 0
    assert out["dv_converged"] and out["dv_rounds"] >= 1
    assert out["intervals_ok"] and out["block_ranges"] == 1
    assert out["pool_free_after"] == 2**24 - 2 - 20 - 5000 - 50
    assert out["route_groups"] <= 60 and out["first_hops_changed"] >= 0
