"""The FGD paper's experiment (Weng et al., ATC'23, Figure 9a) on the Alibaba 2023 trace, as its
public simulator (hkust-adsl/kubernetes-scheduler-simulator) runs it.

* Cluster: the 1,213 GPU nodes of ``openb_node_list_gpu_node.csv`` (6,212 GPUs), CPU and memory
  checked (Kubernetes' resource filter), GPUs of 1000 milli each.
* Arrivals, per seed: the 8,152 pods (sorted by name) shuffled, then clones of uniformly drawn pods
  appended while the requested GPU plus the next clone's per-GPU milli stays within ``load`` x
  capacity (the simulator's tuning loop, quirk included); nobody leaves.
* Ties between equally scored nodes: a seeded random permutation of the node names (the simulator
  prefixes every node name with its index in ``rand.Perm``).
* Policies with the paper's scoring: ``random``, ``dotprod`` (Tetris, CPU and total GPU normalized by
  128 cores / 8 GPUs, the smallest product wins), ``gpu-clustering``, ``gpu-packing``, ``best-fit``,
  ``fgd`` (see ``policies/placement/gpufrag.py``); fractional pods take the tightest GPU (random for
  ``random``, the best-scoring one for the FGD family), whole-GPU pods the first fully free GPUs.
* Metric: unallocated GPU % = 100 - allocated %, averaged over the arrivals whose cumulative arrived
  GPU (rejected pods included) rounds to x % of capacity, then the median over seeds.

The loop is one numpy pass per pod over the 1,213 nodes (no Python loop over nodes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolvisor.clock import SimClock
from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.placement import gpufrag as gf
from poolvisor.traces import alibaba as ali

PAPER_POLICIES = ("random", "dotprod", "gpu-clustering", "gpu-packing", "best-fit", "fgd")
OUR_POLICIES = ("fgd-ri",)
ALL_POLICIES = PAPER_POLICIES + OUR_POLICIES
ABLATIONS = ("fgd-exact", "fgd-residue", "fgd-interleave")  # by name only (not in "all")
FILL_STREAM = 99  # the fill order's random stream: default_rng([seed, FILL_STREAM])
#: Figure 9a of the paper: median unallocated GPU % (10 seeds) at 100 % and 130 % arrived.
PUBLISHED: dict[str, tuple[float, float]] = {
    "random": (13.75, 12.62),
    "dotprod": (9.44, 9.20),
    "gpu-clustering": (8.42, 8.21),
    "gpu-packing": (8.19, 7.94),
    "best-fit": (7.09, 6.89),
    "fgd": (4.77, 4.60),
}


@dataclass(frozen=True)
class PaperData:
    """Nodes and pods sorted by name (the simulator's order before shuffling)."""

    node_names: np.ndarray
    node_cpu: np.ndarray  # milli
    node_mem: np.ndarray  # MiB
    node_gpus: np.ndarray
    pod_cpu: np.ndarray
    pod_mem: np.ndarray
    pod_count: np.ndarray
    pod_milli: np.ndarray
    workload: gf.TargetWorkload

    @property
    def capacity_milli(self) -> int:
        return int(self.node_gpus.sum()) * gf.MILLI

    @property
    def pods(self) -> int:
        return int(self.pod_cpu.size)


def load_paper_data(directory: str | Path, *, coverage_pct: float = 95.0) -> PaperData:
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"Alibaba trace directory not found: {d}")
    nodes = ali.read_nodes(d / ali.GPU_NODE_FILE)
    pods = ali.read_pods(d / ali.POD_FILE)
    if len(pods) == 0:
        raise InvalidInputError(f"{d / ali.POD_FILE}: no pods")
    bad = np.flatnonzero((pods.num_gpu > 1) & (pods.gpu_milli < gf.MILLI))
    if bad.size:
        raise InvalidInputError(f"pod {pods.names[bad[0]]!r} asks for several fractional GPUs, which the "
                                "paper's simulator does not support")
    if nodes.gpus.sum() == 0:
        raise InvalidInputError(f"{d / ali.GPU_NODE_FILE}: no GPUs")
    no = np.argsort(nodes.names.astype(str), kind="stable")
    po = np.argsort(pods.names.astype(str), kind="stable")
    wl = gf.TargetWorkload.typical(pods.cpu_milli, pods.num_gpu, pods.gpu_milli, coverage_pct=coverage_pct)
    return PaperData(nodes.names[no], nodes.cpu_milli[no], nodes.memory_mib[no], nodes.gpus[no],
                     pods.cpu_milli[po], pods.memory_mib[po], pods.num_gpu[po], pods.gpu_milli[po], wl)


@dataclass(frozen=True)
class Arrivals:
    """One seed's arrival order (indices into the pods) and node tie ranks (lower wins)."""

    seed: int
    order: np.ndarray
    rank: np.ndarray


def make_arrivals(data: PaperData, seed: int, load: float = 1.3) -> Arrivals:
    if load <= 0:
        raise InvalidInputError("--load must be > 0")
    rng = np.random.default_rng(seed)
    n = data.pods
    order = rng.permutation(n)
    gpu = data.pod_count * data.pod_milli
    target = load * data.capacity_milli
    total = float(gpu.sum())
    extra: list[np.ndarray] = []
    while True:  # clone until the next clone's per-GPU milli would exceed the target
        draw = rng.integers(0, n, size=max(n, 1024))
        before = total + np.concatenate([[0.0], np.cumsum(gpu[draw])[:-1]])
        stop = np.flatnonzero(before + data.pod_milli[draw] > target)
        if stop.size:
            extra.append(draw[: stop[0]])
            break
        extra.append(draw)
        total = float(before[-1] + gpu[draw[-1]])
    rank = rng.permutation(data.node_names.size)
    return Arrivals(seed, np.concatenate([order, *extra]), rank)


# ---- the cluster -------------------------------------------------------------------------------
class GpuShareCluster:
    """Node arrays (CPU, memory, per-GPU milli left) plus the measure's per-node statistics,
    updated for the one node a placement touches."""

    def __init__(self, data: PaperData, wl: gf.TargetWorkload, fill: np.ndarray | None = None) -> None:
        self.fill = fill  # fill order positions for the interleaving policies
        self.cpu_left = data.node_cpu.astype(np.float64)
        self.mem_left = data.node_mem.astype(np.float64)
        self.ngpu = data.node_gpus.astype(np.int64)
        g = max(int(self.ngpu.max()), 1)
        self.dev = np.where(np.arange(g)[None, :] < self.ngpu[:, None], gf.MILLI, 0).astype(np.int64)
        self.wl = wl
        self.st = gf.HostStats.build(self.cpu_left, self.dev, wl)
        self.max_free = self.dev.max(axis=1)  # the most free milli on one GPU
        self.n_free = np.count_nonzero(self.dev == gf.MILLI, axis=1)  # fully free GPUs
        self.tags = np.zeros((self.ngpu.size, g + 1), dtype=np.int64)  # pods per GPU tag (0 = shared)
        self.used_milli = 0
        # scores of the FGD family per (node, pod kind): a node's score for a kind of pod changes only
        # when the node does, so only the rows of nodes touched since are recomputed (NaN = stale)
        self.kind = -1
        self.cache_key = np.zeros((self.ngpu.size, 0))
        self.cache_gpu = np.zeros((self.ngpu.size, 0), dtype=np.int64)

    def use_cache(self, kinds: int) -> None:
        self.cache_key = np.full((self.ngpu.size, kinds), np.nan)
        self.cache_gpu = np.full((self.ngpu.size, kinds), -1, dtype=np.int64)

    def feasible(self, pod: gf.Pod, mem: float) -> np.ndarray:
        ok = (self.cpu_left >= pod.cpu) & (self.mem_left >= mem)
        if pod.count == 1:
            ok &= self.max_free >= pod.milli
        elif pod.count and pod.milli == gf.MILLI:
            ok &= self.n_free >= pod.count
        elif pod.count:
            ok &= np.count_nonzero(self.dev >= pod.milli, axis=1) >= pod.count
        return np.flatnonzero(ok)

    def place(self, h: int, pod: gf.Pod, mem: float, gpu: int) -> None:
        self.cpu_left[h] -= pod.cpu
        self.mem_left[h] -= mem
        if pod.count:
            row = self.dev[h]
            if pod.shares_gpu:
                if gpu < 0 or row[gpu] < pod.milli:
                    raise AssertionError(f"GPU {gpu} of node {h} cannot take {pod.milli} milli")
                row[gpu] -= pod.milli
            elif pod.milli == gf.MILLI:  # the first fully free GPUs
                row[np.flatnonzero(row == gf.MILLI)[: pod.count]] = 0
            else:
                self.dev[h] = gf.take_devices(row[None, :], pod)[1][0]
            self.max_free[h] = self.dev[h].max()
            self.n_free[h] = np.count_nonzero(self.dev[h] == gf.MILLI)
            self.tags[h, 0 if pod.shares_gpu else pod.count] += 1
            self.used_milli += pod.gpu_milli
        self.st.update(h, float(self.cpu_left[h]), self.dev[h], self.wl)
        if self.cache_key.shape[1]:
            self.cache_key[h] = np.nan


    def check(self, data: PaperData) -> None:
        """Raise AssertionError if a node is over capacity or the GPU books disagree."""
        if np.any(self.cpu_left < -1e-9) or np.any(self.mem_left < -1e-9):
            raise AssertionError("a node is over its CPU or memory")
        if np.any(self.dev < 0) or np.any(self.dev > gf.MILLI):
            raise AssertionError("a GPU is over-allocated")
        real = np.arange(self.dev.shape[1])[None, :] < self.ngpu[:, None]
        if np.any(self.dev[~real] != 0):
            raise AssertionError("a node uses a GPU it does not have")
        if self.used_milli != int(data.node_gpus.sum()) * gf.MILLI - int(self.dev.sum()):
            raise AssertionError("allocated GPU disagrees with the GPUs' free milli")
        fresh = gf.HostStats.build(self.cpu_left, self.dev, self.wl)
        if not (np.allclose(fresh.frag, self.st.frag) and np.array_equal(fresh.cnt, self.st.cnt)
                and np.array_equal(fresh.first, self.st.first)):
            raise AssertionError("the incremental fragmentation statistics drifted")
        if not (np.array_equal(self.max_free, self.dev.max(axis=1))
                and np.array_equal(self.n_free, np.count_nonzero(self.dev == gf.MILLI, axis=1))):
            raise AssertionError("the fit indexes drifted")


# ---- the paper's policies: scores over candidate nodes (higher is better) and the GPU -------------
Scored = tuple[np.ndarray, np.ndarray | None]  # scores over the candidates, GPU of a fractional pod
Scorer = Callable[[GpuShareCluster, np.ndarray, gf.Pod, np.random.Generator], Scored]


def _tightest(cl: GpuShareCluster, cand: np.ndarray, pod: gf.Pod) -> np.ndarray | None:
    """The simulator's "best" GPU choice for a fractional pod: least free milli that fits, first of equals."""
    if not pod.shares_gpu:
        return None
    d = cl.dev[cand]
    return np.argmin(np.where(d >= pod.milli, d, np.iinfo(np.int64).max), axis=1)


def _random(cl: GpuShareCluster, cand: np.ndarray, pod: gf.Pod, rng: np.random.Generator) -> Scored:
    score = np.zeros(cand.size)
    score[rng.integers(cand.size)] = 1.0
    gpus = None
    if pod.shares_gpu:
        room = cl.dev[cand] >= pod.milli
        pick = (rng.random(cand.size)[:, None] * room.sum(axis=1)[:, None]).astype(np.int64)
        gpus = np.argmax(np.cumsum(room, axis=1) > pick, axis=1)  # a uniform GPU among those with room
    return score, gpus


def _dotprod(cl: GpuShareCluster, cand: np.ndarray, pod: gf.Pod, rng: np.random.Generator) -> Scored:
    dot = ((cl.cpu_left[cand] / gf.MAX_SPEC_CPU) * (pod.cpu / gf.MAX_SPEC_CPU)
           + (cl.st.total[cand] / gf.MAX_SPEC_GPU) * (pod.gpu_milli / gf.MAX_SPEC_GPU))
    return np.trunc(float(gf.SCORE_MAX) * (1.0 - dot / 2.0)), _tightest(cl, cand, pod)


def _best_fit(cl: GpuShareCluster, cand: np.ndarray, pod: gf.Pod, rng: np.random.Generator) -> Scored:
    s = ((cl.cpu_left[cand] - pod.cpu) / gf.MAX_SPEC_CPU * 0.5
         + (cl.st.total[cand] - pod.gpu_milli) / gf.MAX_SPEC_GPU * 0.5)
    return np.trunc((1.0 - s) * float(gf.SCORE_MAX)), _tightest(cl, cand, pod)


def _gpu_clustering(cl: GpuShareCluster, cand: np.ndarray, pod: gf.Pod, rng: np.random.Generator) -> Scored:
    if pod.count == 0:
        return np.zeros(cand.size), None
    tags = cl.tags[cand]
    has = tags[:, 0 if pod.shares_gpu else pod.count] > 0
    ntags = np.count_nonzero(tags, axis=1)
    base = (25 * (8000 - cl.st.total[cand].astype(np.int64))) // 8000
    offset = np.where(has, np.where(ntags == 1, 75, 50), np.where(ntags == 0, 25, 0))
    return (base + offset).astype(np.float64), _tightest(cl, cand, pod)


def _gpu_packing(cl: GpuShareCluster, cand: np.ndarray, pod: gf.Pod, rng: np.random.Generator) -> Scored:
    if pod.count == 0:
        return np.zeros(cand.size), None
    d = cl.dev[cand]
    ngpu = cl.ngpu[cand]
    free_gpus = np.count_nonzero(d == gf.MILLI, axis=1)
    if pod.shares_gpu:
        tight = np.where(d >= pod.milli, d, np.iinfo(np.int64).max).min(axis=1)
        used_free = (tight == gf.MILLI).astype(np.int64)
        shared = np.maximum(100 - (tight * 100 // gf.MILLI) // 10, 50)
    else:  # whole GPUs: always fully free ones
        used_free = np.full(cand.size, pod.count, dtype=np.int64)
        shared = np.zeros(cand.size, dtype=np.int64)
    score = np.where(used_free > 0, np.maximum(50 - used_free, 33), shared)
    score = np.where(free_gpus == ngpu, np.maximum(33 - free_gpus, free_gpus), score)
    return score.astype(np.float64), _tightest(cl, cand, pod)


def _gpufrag(name: str) -> Scorer:
    def score(cl: GpuShareCluster, cand: np.ndarray, pod: gf.Pod, rng: np.random.Generator) -> Scored:
        if cl.kind < 0 or not cl.cache_key.shape[1]:
            s, gpus = gf.score_hosts(name, cl.st, cl.dev, cand, pod, cl.wl, cl.fill)
            return s, (gpus if pod.shares_gpu else None)
        col = cl.cache_key[:, cl.kind]
        stale = cand[np.isnan(col[cand])]
        if stale.size:
            s, gpus = gf.score_hosts(name, cl.st, cl.dev, stale, pod, cl.wl, cl.fill)
            col[stale] = s
            cl.cache_gpu[stale, cl.kind] = gpus
        return col[cand], (cl.cache_gpu[cand, cl.kind] if pod.shares_gpu else None)

    return score


SCORERS: dict[str, Scorer] = {
    "random": _random,
    "dotprod": _dotprod,
    "gpu-clustering": _gpu_clustering,
    "gpu-packing": _gpu_packing,
    "best-fit": _best_fit,
    **{n: _gpufrag(n) for n in gf.GPU_POLICIES},
}


def shape_classes(data: PaperData) -> np.ndarray:
    """(N,) class id of each node: nodes with the same GPUs, CPU and memory share one."""
    cols = zip(data.node_gpus, data.node_cpu, data.node_mem, strict=True)
    keys = np.array([f"{g}/{c}/{m}" for g, c, m in cols])
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


def interleaved_fill(data: PaperData, seed: int) -> np.ndarray:
    """The seed's fill order for the interleaving policies: a random order inside each node class,
    a random phase per class (``gf.fill_positions``)."""
    shape = shape_classes(data)
    rng = np.random.default_rng([seed, FILL_STREAM])
    within = np.zeros(shape.size, dtype=np.int64)
    phase = np.zeros(int(shape.max()) + 1)
    for c in range(phase.size):
        perm = rng.permutation(np.flatnonzero(shape == c))
        within[perm] = np.arange(perm.size)
        phase[c] = rng.random()
    return gf.fill_positions(shape, within, phase)


def policy_names(spec: str) -> list[str]:
    """'all' (the paper's six and ours), 'paper' (the six of Figure 9a) or a comma-separated list."""
    s = spec.strip()
    if s == "all":
        return list(ALL_POLICIES)
    if s == "paper":
        return list(PAPER_POLICIES)
    names = [x.strip() for x in s.split(",") if x.strip()]
    if not names:
        raise InvalidInputError("no policy given")
    for n in names:
        if n not in SCORERS:
            raise InvalidInputError(f"unknown policy {n!r} for --setup paper; known: "
                                    f"{', '.join(ALL_POLICIES + ABLATIONS)}, paper, all")
    return names


# ---- one run -------------------------------------------------------------------------------------
@dataclass
class PaperRun:
    policy: str
    seed: int
    arrived_milli: np.ndarray  # (n,) cumulative requested GPU after each arrival
    used_milli: np.ndarray  # (n,) allocated GPU after each arrival
    placed: np.ndarray  # (n,) bool
    capacity_milli: int
    wall_s: float

    def unallocated_at(self, x: float) -> float:
        return unallocated_at(self.arrived_milli, self.used_milli, self.capacity_milli, x)


def simulate(
    data: PaperData,
    arrivals: Arrivals,
    policy: str,
    wl: gf.TargetWorkload | None = None,
    *,
    cache: bool = True,
    check: bool = False,
) -> PaperRun:
    """Place the arrivals in order with one policy on a fresh cluster. ``cache`` keeps the FGD
    family's scores per (node, pod kind) between pods (same results, faster); ``check`` verifies the
    cluster's books after every pod (tests)."""
    t0 = time.perf_counter()
    scorer = SCORERS.get(policy)
    if scorer is None:
        raise InvalidInputError(f"unknown policy {policy!r}; known: {', '.join(ALL_POLICIES)}")
    fill = interleaved_fill(data, arrivals.seed) if policy in gf.FILL_POLICIES else None
    cl = GpuShareCluster(data, wl or data.workload, fill)
    rng = np.random.default_rng([arrivals.seed, 7])
    order = arrivals.order
    cpu = data.pod_cpu[order].astype(np.float64).tolist()
    mem = data.pod_mem[order].astype(np.float64).tolist()
    count = data.pod_count[order].tolist()
    milli = data.pod_milli[order].tolist()
    n = order.size
    kinds = np.unique(np.column_stack([data.pod_cpu, data.pod_count, data.pod_milli]), axis=0,
                      return_inverse=True)[1].reshape(-1)
    kind = kinds[order].tolist()
    if cache and policy in gf.GPU_POLICIES:
        cl.use_cache(int(kinds.max()) + 1)
    used = np.zeros(n, dtype=np.int64)
    placed = np.zeros(n, dtype=bool)
    rank = arrivals.rank
    clock = SimClock()

    def arrive(i: int) -> None:
        if i + 1 < n:  # fed one at a time, in order
            clock.post(float(i + 1), 0, arrive, i + 1)
        pod = gf.Pod(cpu[i], count[i], milli[i])
        cl.kind = kind[i]
        cand = cl.feasible(pod, mem[i])
        if cand.size:
            score, gpus = scorer(cl, cand, pod, rng)
            k = 0
            if cand.size > 1:  # the best score, then the lowest tie rank
                ties = np.flatnonzero(score == score.max())
                k = int(ties[np.argmin(rank[cand[ties]])]) if ties.size > 1 else int(ties[0])
            cl.place(int(cand[k]), pod, mem[i], int(gpus[k]) if gpus is not None else -1)
            placed[i] = True
        used[i] = cl.used_milli
        if check:
            cl.check(data)

    # pods never leave and the paper's axis is arrived load, not time: an arrival's time on the
    # clock is its rank
    if n:
        clock.post(0.0, 0, arrive, 0)
    clock.run()
    arrived = np.cumsum(data.pod_count[order] * data.pod_milli[order])
    wall = time.perf_counter() - t0
    return PaperRun(policy, arrivals.seed, arrived, used, placed, data.capacity_milli, wall)


def unallocated_at(arrived_milli: np.ndarray, used_milli: np.ndarray, capacity_milli: int, x: float) -> float:
    """The paper's metric at x % arrived: 100 - mean allocated % (each rounded to 0.01) over the
    arrivals whose arrived GPU rounds to x % (within +-1 % when none does); NaN when none is near."""
    pct = np.round(arrived_milli / capacity_milli * 100.0)
    rows = pct == x
    if not rows.any():
        rows = (pct >= x - 1) & (pct <= x + 1)
        if not rows.any():
            return float("nan")
    alloc = np.round(used_milli[rows] / capacity_milli * 100.0, 2)
    return round(100.0 - round(float(alloc.mean()), 2), 2)


# ---- many seeds ----------------------------------------------------------------------------------
@dataclass
class PaperResult:
    policies: list[str]
    seeds: list[int]
    at: list[float]
    load: float
    runs: dict[str, list[PaperRun]] = field(default_factory=dict)

    def per_seed(self, policy: str, x: float) -> list[float]:
        return [r.unallocated_at(x) for r in self.runs[policy]]

    def median(self, policy: str, x: float) -> float:
        v = np.array(self.per_seed(policy, x))
        v = v[np.isfinite(v)]
        return round(float(np.median(v)), 2) if v.size else float("nan")

    def curve(self, policy: str, xs: Sequence[float] | np.ndarray) -> np.ndarray:
        return np.array([self.median(policy, x) for x in xs])

    def wall_s(self, policy: str) -> float:
        return float(sum(r.wall_s for r in self.runs[policy]))


def run(
    data: PaperData,
    policies: Sequence[str],
    seeds: Sequence[int],
    at: Sequence[float],
    *,
    load: float = 1.3,
    progress: Callable[[str, int], None] | None = None,
) -> PaperResult:
    """Every policy on every seed's arrivals (the same arrivals and tie ranks for all policies)."""
    res = PaperResult(list(policies), list(seeds), list(at), load)
    arrivals = [make_arrivals(data, s, load) for s in seeds]
    for p in policies:
        res.runs[p] = []
        for a in arrivals:
            res.runs[p].append(simulate(data, a, p))
            if progress is not None:
                progress(p, a.seed)
    return res


def parse_seeds(spec: str) -> list[int]:
    """'42-51', '0,3,7' or a mix ('0-4,9'); seeds are non-negative integers."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise InvalidInputError(f"bad seed list {spec!r}: use e.g. 42-51 or 0,3,7")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi - lo >= 1000 or len(out) + hi - lo + 1 > 1000:
            raise InvalidInputError("at most 1000 seeds")
        out.extend(range(lo, hi + 1))
    if not out:
        raise InvalidInputError("no seed given")
    return out


def parse_at(spec: str) -> list[float]:
    """'100,130': arrived percentages of the GPU capacity."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise InvalidInputError(f"bad --at value {part!r}: use percentages, e.g. 100,130") from None
        if not 0 <= v <= 1000:
            raise InvalidInputError(f"--at {part}: must be between 0 and 1000 (%)")
        out.append(v)
    if not out:
        raise InvalidInputError("--at needs at least one percentage")
    return out
