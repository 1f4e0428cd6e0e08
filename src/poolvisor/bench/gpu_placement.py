"""`poolvisor bench gpu-placement`: shared-GPU placement (the `fgd-ri` policy) as the service serves it.

Two figures, because the placement index does not express the `gpu-devices` filter nor the
`fgd-ri` scorer (requests with that policy go to the exact pipeline, `served.decide` says so):

* `served_per_s`: decisions per second of `served.decide` on an in-memory pool of GPU hosts with
  per-GPU state attached (what `create_workload` calls under the cache lock), each followed by the
  GPU choice (`FgdRiScorer.explain` on the chosen host, as the service does) and the allocation.
  `exact_paths` counts the decisions the exact pipeline took (all of them with this policy).
* `store_creates_per_s`: workloads created per second through the services on a temporary SQLite
  store (placement, the ledger's claim of devices, the driver, the confirm): end to end, one thread.

Requests: a mix shaped like the Alibaba GPU trace (most ask a fraction of one GPU or one GPU, a
few 2, 4 or 8), 2-16 vCPUs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.domain.models import HostSpec
from poolvisor.policies.placement import PlacementPolicy, Request, gpushare
from poolvisor.policies.placement.indexed import IndexedPlacer
from poolvisor.policies.placement.served import EXACT_PATH, decide
from poolvisor.state.cluster import ClusterState

SHAPES = ((0.6, 96, 786432, 8), (0.3, 64, 262144, 4), (0.1, 32, 131072, 2))  # share, vcpu, MiB, GPUs
GPU_ASKS = ((0.10, 0.1), (0.15, 0.25), (0.20, 0.5), (0.05, 0.75), (0.35, 1), (0.08, 2), (0.04, 4), (0.03, 8))


def _hosts(n: int, rng: np.random.Generator) -> list[tuple[str, int, int, int]]:
    kinds = rng.choice(len(SHAPES), size=n, p=[s[0] for s in SHAPES])
    return [(f"gpu-{i:05d}", SHAPES[k][1], SHAPES[k][2], SHAPES[k][3]) for i, k in enumerate(kinds)]


def _asks(n: int, rng: np.random.Generator) -> list[dict[str, float]]:
    g = rng.choice(len(GPU_ASKS), size=n, p=[a[0] for a in GPU_ASKS])
    cpu = rng.choice((2, 4, 8, 16), size=n)
    return [{"vcpu": float(c), "memory_mib": float(c) * 4096, "gpu": float(GPU_ASKS[k][1])}
            for c, k in zip(cpu, g, strict=True)]


def served_rate(hosts: int, requests: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    spec = _hosts(hosts, rng)
    st = ClusterState(("vcpu", "memory_mib", "gpu"))
    free = np.zeros((hosts, 8), dtype=np.int64)
    for i, (name, cpu, mem, gpus) in enumerate(spec):
        st.add_host(HostSpec(name, {"vcpu": cpu, "memory_mib": mem, "gpu": gpus}))
        free[i, :gpus] = 1000
    dev = gpushare.attach(st, gpushare.GpuDevices(free))
    policy = PlacementPolicy.named("fgd-ri")
    placer = IndexedPlacer(st, policy, jit=False)  # as the service below 10,000 hosts
    scorer = gpushare.FgdRiScorer()
    asks = _asks(requests, rng)
    placed = exact = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for i, ask in enumerate(asks):
        req = Request(f"r{i}", st.resources.vector(ask))
        d = decide(placer, req)
        exact += d.explanation.path.startswith(EXACT_PATH)
        if d.host_index is None:
            continue
        pod = gpushare.request_pod(st, req.demand)
        gpu = int(scorer.explain(st, req, [d.host_index])[0]["gpu"]) if pod.shares_gpu else -1
        dev.allocate(d.host_index, pod, gpu)
        st.allocate(d.host_index, req.demand)
        placed += 1
    wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    placer.close()
    total = int(np.count_nonzero(free)) * 1000
    return {"hosts": hosts, "gpus": int(np.count_nonzero(free)), "requests": requests, "placed": placed,
            "served_per_s": round(requests / wall, 1), "served_per_cpu_s": round(requests / cpu_s, 1)
            if cpu_s > 0 else None, "exact_paths": exact,
            "gpu_allocated_fraction": round(1 - float(dev.free.sum()) / total, 4)}


def store_rate(hosts: int, creates: int, seed: int) -> dict[str, Any]:
    from poolvisor.domain.errors import NoValidHostError
    from poolvisor.services import open_services

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        svc = open_services(f"sqlite:///{Path(tmp) / 'bench.db'}", policy=PlacementPolicy.named("fgd-ri"))
        try:
            svc.catalog.create_pool("gpu")
            for name, cpu, mem, gpus in _hosts(hosts, rng):
                svc.hosts.create_host(name, {"vcpu": cpu, "memory_mib": mem}, pool="gpu",
                                      gpus=[{"count": gpus, "model": "A100", "memory_mib": 40960}])
            svc.catalog.create_project("bench")
            made = 0
            t0 = time.perf_counter()
            for i, ask in enumerate(_asks(creates, rng)):
                try:
                    svc.workloads.create_workload("bench", f"w{i}", demand=ask, pool="gpu")
                    made += 1
                except NoValidHostError:  # no host can take it (now): counted, not fatal
                    continue
            wall = time.perf_counter() - t0
            ok = svc.repair.check().ok
        finally:
            svc.close()
    return {"store_hosts": hosts, "store_creates": creates, "store_created": made,
            "store_creates_per_s": round(creates / wall, 1), "store_invariants_ok": ok}


def run(hosts: int = 1000, requests: int = 5000, store_hosts: int = 100, store_creates: int = 300,
        seed: int = 1) -> dict[str, Any]:
    out = served_rate(hosts, requests, seed)
    if store_creates > 0:
        out.update(store_rate(store_hosts, store_creates, seed + 1))
    return out
