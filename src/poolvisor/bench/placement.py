"""`poolvisor bench placement`: sequential placements through the full filter+scorer policy.

A synthetic but realistic cluster (four host types, ~10% GPU hosts, ~10% SSD hosts, racks of 40,
a few hosts in maintenance or down, hosts already 0-70% used) receives requests drawn from an
8-flavor catalogue, ~30% with label constraints, ~12% in anti-affinity groups (3-5 members; one
group in 20 is domain-spread instead).
Each request is decided by `IndexedPlacer` (exactly `pipeline.place`'s choice with the default
policy: host state, pool, capacity, labels, affinity, domain spread, max workloads; best fit) and
allocated before the next one is decided. Three reference figures come with it:

* `scan_floor_per_s`: a bare vectorized fit-and-argmin over the same (R, H) float64 arrays (all
  resources fit, least leftover of the first one), one request after another: what any scan-based
  placer costs at best. `ratio_to_floor` = scan_floor_per_s / placements_per_s (< 1 = faster).
* `pipeline_per_s`: `pipeline.place` itself (filters, scorers, explanation), on a sample.
* `verified` / `mismatches`: extra requests decided by both the index and the pipeline on the final
  state (the pipeline's choice is allocated); any mismatch is a bug.
* `served_per_s`: the same requests, from the same starting cluster, through `served.decide`, the
  very function `create_workload` calls for its decision (index choice plus a summary explanation:
  top candidates with per-scorer scores, candidate counts; the full explanation when nothing
  fits), each decision applied to the state as the service's cache applies it.
  `served_mismatches` counts hosts that differ from the index loop's (a bug if not 0).
  `served_build_s` is the index build before the first request (the placement cache pays it when it
  loads, with class rows pre-allocated); a class seen for the first time is admitted inside the
  timed loop, as in a running server.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from poolvisor.domain.models import GroupPolicy, HostSpec, HostState
from poolvisor.policies.placement import PlacementPolicy, Request, place
from poolvisor.policies.placement.indexed import IndexedPlacer
from poolvisor.policies.placement.served import decide
from poolvisor.state.cluster import ClusterState

# name, weight, vcpu, memory_mib, disk_gib, net_mbps, gpu, overcommit (vcpu, memory), labels
HOST_TYPES = [
    ("general", 0.60, 64, 262144, 2000, 25000, 0, (4.0, 1.2), {}),
    ("compute", 0.15, 96, 196608, 1000, 25000, 0, (2.0, 1.0), {}),
    ("memory", 0.15, 48, 786432, 2000, 25000, 0, (4.0, 1.0), {}),
    ("gpu", 0.10, 64, 524288, 4000, 100000, 8, (1.0, 1.0), {"gpu": "yes"}),
]
# name, weight, vcpu, memory_mib, disk_gib, net_mbps, gpu
FLAVORS = [
    ("m1.small", 0.20, 1, 2048, 20, 100, 0),
    ("m1.medium", 0.25, 2, 4096, 40, 200, 0),
    ("m1.large", 0.20, 4, 8192, 80, 500, 0),
    ("m1.xlarge", 0.10, 8, 16384, 160, 1000, 0),
    ("c1.large", 0.08, 8, 8192, 40, 1000, 0),
    ("r1.large", 0.08, 4, 32768, 80, 500, 0),
    ("r1.xlarge", 0.04, 8, 65536, 160, 1000, 0),
    ("g1.large", 0.05, 8, 65536, 200, 5000, 1),
]
RESOURCES = ("vcpu", "memory_mib", "disk_gib", "net_mbps", "gpu")


@dataclass(frozen=True)
class BenchConfig:
    hosts: int = 100_000
    requests: int = 100_000
    seed: int = 1
    churn: float = 0.0  # probability of releasing an earlier placement before each request
    verify: int = 200
    floor_requests: int = 2000


def build_cluster(n: int, seed: int) -> ClusterState:
    """n hosts of the four types in random order, racks of 40, labels, some not UP, partly used."""
    rng = np.random.default_rng(seed)
    st = ClusterState(RESOURCES, capacity_hint=n)
    kinds = rng.choice(len(HOST_TYPES), size=n, p=[t[1] for t in HOST_TYPES])
    ssd = rng.random(n) < 0.10
    states = rng.choice([HostState.UP, HostState.MAINTENANCE, HostState.DOWN], size=n,
                        p=[0.993, 0.005, 0.002])
    for i in range(n):
        _name, _w, vcpu, mem, disk, net, gpu, (oc_cpu, oc_mem), labels = HOST_TYPES[kinds[i]]
        lab = {**labels, "ssd": "yes"} if ssd[i] else labels
        st.add_host(HostSpec(
            f"host-{i:06d}", {"vcpu": vcpu, "memory_mib": mem, "disk_gib": disk, "net_mbps": net, "gpu": gpu},
            {"vcpu": oc_cpu, "memory_mib": oc_mem}, lab, f"rack-{i // 40:05d}", HostState(int(states[i])),
            max_workloads=128 if kinds[i] == 0 else 0,
        ))
    # existing load: each host 0-70% used, in whole units (so scores tie and differ as in real life)
    fill = rng.random(n) * 0.7
    grain = np.array([1.0, 1024.0, 10.0, 100.0, 1.0])[:, None]
    st.allocated[:] = np.floor(st.capacity * fill * rng.uniform(0.6, 1.0, size=(5, n)) / grain) * grain
    st.allocated[4] = np.floor(st.capacity[4] * fill)
    st.workload_count[:] = np.minimum(rng.integers(0, 40, size=n), np.where(st.max_workloads > 0, 127, 10**6))
    st.touch()
    return st


def make_requests(st: ClusterState, n: int, seed: int, prefix: str = "vm") -> list[Request]:
    """Flavor mix with labels (GPU flavors need gpu=yes; some want SSD, some avoid GPU hosts) and groups."""
    rng = np.random.default_rng(seed)
    vectors = [st.resources.vector(dict(zip(RESOURCES, f[2:], strict=True))) for f in FLAVORS]
    kinds = rng.choice(len(FLAVORS), size=n, p=[f[1] for f in FLAVORS])
    u = rng.random((n, 3))
    out: list[Request] = []
    group: str | None = None
    gpol: GroupPolicy | None = None
    left = 0
    for i in range(n):
        k = int(kinds[i])
        required: dict[str, str] = {}
        forbidden: dict[str, str] = {}
        if FLAVORS[k][6]:
            required = {"gpu": "yes"}
        elif u[i, 0] < 0.10:
            required = {"ssd": "yes"}
        elif u[i, 0] < 0.30:
            forbidden = {"gpu": "yes"}
        if left == 0:  # start a group (3-5 members; ~12% of requests): anti-affinity, 1 in 20 domain spread
            group, gpol = None, None
            if u[i, 1] < 0.035:
                gpol = GroupPolicy.DOMAIN_SPREAD if u[i, 1] < 0.00175 else GroupPolicy.ANTI_AFFINITY
                group, left = f"{prefix}-grp-{i}", int(3 + u[i, 2] * 3)
        if left:
            left -= 1
        out.append(Request(f"{prefix}-{i}", vectors[k], required, forbidden,
                           group if gpol else None, gpol if group else None))
        if not left:
            group, gpol = None, None
    return out


def scan_floor(st: ClusterState, reqs: list[Request], dtype: type = np.float64) -> float:
    """Seconds per request of a bare fit-and-argmin scan over (R, H) arrays, allocating as it goes."""
    free = (st.capacity - st.allocated).astype(dtype)
    t0 = time.perf_counter()
    for req in reqs:
        d: np.ndarray = req.demand.astype(dtype)[:, None]
        fits = (free >= d).all(axis=0)
        h = int(np.argmin(np.where(fits, free[0], np.inf)))
        if fits[h]:
            free[:, h] -= d[:, 0]
    return (time.perf_counter() - t0) / max(1, len(reqs))


@dataclass(frozen=True)
class _Loop:
    hosts: np.ndarray  # host chosen per request, -1 = none
    seconds: float
    cpu: float
    releases: int


def _drive(st: ClusterState, reqs: list[Request], choose: Callable[[Request], int], churn: np.ndarray,
           pick: np.ndarray, tick: Callable[[int], None]) -> _Loop:
    """Decide each request with `choose` and allocate it (releasing an earlier one first where
    `churn` says so), timing the loop in wall-clock and process CPU seconds."""
    live: list[tuple[int, Request]] = []
    keep = bool(churn.any())
    hosts = np.full(len(reqs), -1, dtype=np.int64)
    releases = 0
    step = max(1, len(reqs) // 50)
    t1, c1 = time.perf_counter(), time.process_time()
    for i, req in enumerate(reqs):
        if churn[i] and live:
            j = int(pick[i] * len(live))
            h, old = live[j]
            live[j] = live[-1]
            live.pop()
            st.release(h, old.demand, old.group)
            releases += 1
        h = choose(req)
        if h >= 0:
            st.allocate(h, req.demand, req.group)
            hosts[i] = h
            if keep:
                live.append((h, req))
        if i % step == 0:
            tick(i)
    return _Loop(hosts, time.perf_counter() - t1, time.process_time() - c1, releases)


def run(cfg: BenchConfig, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    def tick(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, done, total)

    t0 = time.perf_counter()
    tick("building cluster", 0, cfg.requests)
    st = build_cluster(cfg.hosts, cfg.seed)
    reqs = make_requests(st, cfg.requests, cfg.seed + 1)
    build_s = time.perf_counter() - t0
    floor_s = scan_floor(st, reqs[: cfg.floor_requests])
    floor32_s = scan_floor(st, reqs[: cfg.floor_requests], np.float32)

    policy = PlacementPolicy()
    served_state = st.copy()  # the served loop starts from the same cluster
    placer = IndexedPlacer(st, policy)
    rng = np.random.default_rng(cfg.seed + 2)
    churn = rng.random(cfg.requests) < cfg.churn
    pick = rng.random(cfg.requests)
    load = os.getloadavg()[0]
    main = _drive(st, reqs, placer.place_fast, churn, pick, lambda i: tick("placing", i, cfg.requests))
    seconds, cpu, releases = main.seconds, main.cpu, main.releases
    placed = int(np.count_nonzero(main.hosts >= 0))
    tick("placing", cfg.requests, cfg.requests)
    stats = dict(placer.stats)

    t_build = time.perf_counter()
    served_placer = IndexedPlacer(served_state, policy)  # the placement cache builds it at load
    served_build_s = time.perf_counter() - t_build
    full = [0]

    def served(req: Request) -> int:
        d = decide(served_placer, req)
        full[0] += d.explanation.detail == "full"
        return -1 if d.host_index is None else d.host_index

    srv = _drive(served_state, reqs, served, churn, pick, lambda i: tick("served", i, cfg.requests))
    served_stats = dict(served_placer.stats)
    served_placer.close()

    mismatches, pipe_s = 0, 0.0
    extra = make_requests(st, cfg.verify, cfg.seed + 3, prefix="check")
    for req in extra:
        got = placer.place_fast(req)
        t2 = time.perf_counter()
        d = place(st, req, policy)
        pipe_s += time.perf_counter() - t2
        want = -1 if d.host_index is None else d.host_index
        mismatches += got != want
        if want >= 0:
            st.allocate(want, req.demand, req.group)
    placer.close()

    per_s = cfg.requests / seconds if seconds > 0 else float("inf")
    served_per_s = cfg.requests / srv.seconds if srv.seconds > 0 else float("inf")
    floor_per_s = 1.0 / floor_s if floor_s > 0 else float("inf")
    return {
        "hosts": cfg.hosts,
        "requests": cfg.requests,
        "placed": placed,
        "unplaced": cfg.requests - placed,
        "churn": cfg.churn,
        "releases": releases,
        "seconds": round(seconds, 3),
        "placements_per_s": round(per_s, 1),
        "us_per_placement": round(1e6 / per_s, 2),
        "cpu_seconds": round(cpu, 3),  # this process only: less sensitive to a busy machine
        "placements_per_cpu_s": round(cfg.requests / cpu, 1) if cpu > 0 else None,
        "load_average": round(load, 2),
        "scan_floor_per_s": round(floor_per_s, 1),
        "scan_floor_us": round(floor_s * 1e6, 2),
        "scan_floor_f32_per_s": round(1.0 / floor32_s, 1) if floor32_s > 0 else None,
        "floor_requests": min(cfg.floor_requests, cfg.requests),
        "ratio_to_floor": round(floor_per_s / per_s, 4),
        "pipeline_per_s": round(cfg.verify / pipe_s, 1) if pipe_s > 0 else None,
        "verified": cfg.verify,
        "mismatches": int(mismatches),
        "index": stats,
        "served_per_s": round(served_per_s, 1),
        "us_per_served": round(1e6 / served_per_s, 2),
        "served_cpu_seconds": round(srv.cpu, 3),
        "served_per_cpu_s": round(cfg.requests / srv.cpu, 1) if srv.cpu > 0 else None,
        # CPU time per served decision (this process only): the figure to compare on a busy machine
        "us_cpu_per_served": round(1e6 * srv.cpu / cfg.requests, 2) if cfg.requests else None,
        "served_mismatches": int(np.count_nonzero(srv.hosts != main.hosts)),
        "served_full_explanations": full[0],
        "served_index": served_stats,
        "served_build_s": round(served_build_s, 3),
        "load_average_end": round(os.getloadavg()[0], 2),
        "flavors": len(FLAVORS),
        "resources": len(RESOURCES),
        "build_s": round(build_s, 2),
        "seed": cfg.seed,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def render(res: dict[str, Any]) -> Any:
    """Rich table of the figures that matter."""
    from rich.table import Table

    t = Table(title=f"placement: {res['hosts']:,} hosts, {res['requests']:,} requests "
                    f"(churn {res['churn']:g}, seed {res['seed']})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("note")
    idx = res["index"]
    rows = [
        ("placements/s", f"{res['placements_per_s']:,.0f}", f"{res['us_per_placement']:.1f} us each, "
                                                            "indexed, exact pipeline choice"),
        ("placements/CPU-s", f"{res['placements_per_cpu_s'] or 0:,.0f}",
         f"per second of this process's CPU time (1-min load average {res['load_average']:g})"),
        ("scan floor/s", f"{res['scan_floor_per_s']:,.0f}", f"bare fit+argmin over (R,H) float64, "
                                                            f"{res['floor_requests']} requests"),
        ("scan floor/s (float32)", f"{res['scan_floor_f32_per_s']:,.0f}", "same scan on float32 copies"),
        ("ratio to floor", f"{res['ratio_to_floor']:.3f}", "floor/s / placements/s (< 1: faster)"),
        ("pipeline.place/s", f"{res['pipeline_per_s'] or 0:,.0f}", "unindexed, with explanation"),
        ("served/s", f"{res['served_per_s']:,.0f}",
         f"{res['us_per_served']:.1f} us each: served.decide, create_workload's decision (summary "
         f"explanation); {res['served_per_cpu_s'] or 0:,.0f} per CPU-s "
         f"({res['us_cpu_per_served'] or 0:.1f} CPU-us each); {res['served_mismatches']} "
         f"mismatches, {res['served_full_explanations']} full explanations (no host)"),
        ("placed", f"{res['placed']:,}", f"{res['unplaced']:,} found no host, {res['releases']:,} released"),
        ("verified vs pipeline", f"{res['verified']:,}", f"{res['mismatches']} mismatches"),
        ("index paths", f"{idx['tree']:,} tree", f"{idx['requeries']:,} re-queries, {idx['row_scan']:,} row "
                                                 f"scans, {idx['full_scan']:,} full scans, "
                                                 f"{idx['classes']} classes"),
    ]
    for r in rows:
        t.add_row(*r)
    return t
