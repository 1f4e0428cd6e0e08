"""`poolvisor bench gpu-placement` on a tiny pool: every figure present, decisions through the exact
pipeline (the index does not express gpu-devices/fgd-ri), the store run leaves no violation."""

from __future__ import annotations

from poolvisor.bench import gpu_placement as bg


def test_small_run() -> None:
    out = bg.run(hosts=30, requests=60, store_hosts=6, store_creates=20, seed=3)
    assert out["placed"] == out["requests"] == 60 and out["exact_paths"] == 60
    assert 0 < out["gpu_allocated_fraction"] < 1 and out["served_per_s"] > 0
    assert 15 <= out["store_created"] <= 20 and out["store_invariants_ok"] and out["store_creates_per_s"] > 0
