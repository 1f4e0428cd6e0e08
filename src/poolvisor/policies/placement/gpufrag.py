"""GPU-sharing placement core: the FGD fragmentation measure and the node scores built on it.

One set of pure numpy functions over host arrays (CPU left ``(N,)``, per-GPU milli left
``(N, G)``, 1000 = one free GPU, 0 for GPUs a host does not have), called by both the simulator
(``sim/online/paper.py``) and the live pipeline's scorer (``gpufrag_scorer.py``), so the two
compute the same scores on the same state.

Fragmentation (Weng et al., ATC'23, as their simulator computes it): for a *target workload* of
task types t with frequencies p_t, the fragment of host n for t is all its free GPU milli when t
does not fit (CPU, or fewer than ``count`` GPUs with ``milli`` free) or needs no GPU, else the free
milli of the GPUs holding less than t's per-GPU demand; F_n = sum_t p_t F_n(t). Every GPU type's
terms depend on the host only through, per distinct per-GPU demand level j, ``cnt_j`` (GPUs with at
least level j free) and ``small_j`` (free milli on the other GPUs), so candidate placements are
scored from those statistics without rebuilding the host's GPUs.

Scores (higher is better), per candidate host:

* ``fgd``: the paper's FGD, ``int(100 * sigmoid((F_before - F_after) / 1000))`` (truncated, so
  many hosts tie); a pod on a fraction of one GPU tries every GPU with room and keeps the best,
  first GPU of equals; whole-GPU pods take the first fully free GPUs.
* ``fgd-exact``: the same measure as an exact float (no truncation, no sigmoid).
* ``fgd-pack`` (ours): FGD's integer score, then among hosts with the best score the one that
  keeps the most whole GPUs and CPU usable: the truncation ties are broken by packing (least free
  GPU milli left after the placement, then least CPU left), see ``packing_key``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poolvisor.domain.errors import InvalidInputError

MILLI = 1000
MAX_SPEC_CPU = 128_000.0  # the paper's normalisation constants (milli CPU, milli GPU of an 8-GPU host)
MAX_SPEC_GPU = 8_000.0
SCORE_MAX = 100


@dataclass(frozen=True)
class Pod:
    """What one request asks for: CPU (host units), ``count`` GPUs with ``milli`` free each."""

    cpu: float
    count: int
    milli: int

    @property
    def shares_gpu(self) -> bool:
        return self.count == 1 and 0 < self.milli < MILLI

    @property
    def gpu_milli(self) -> int:
        return self.count * self.milli


@dataclass(frozen=True)
class TargetWorkload:
    """Task types (CPU, GPU count, milli per GPU) and their frequencies ``p`` (sum 1).

    ``levels`` are the distinct per-GPU demands of the GPU types; ``level_of[k]`` is the level of
    GPU type ``gpu[k]``. CPU-only types (milli 0) count all free GPU as fragment.
    """

    cpu: np.ndarray
    count: np.ndarray
    milli: np.ndarray
    p: np.ndarray
    levels: np.ndarray
    level_of: np.ndarray
    gpu: np.ndarray

    def __len__(self) -> int:
        return int(self.p.size)

    @classmethod
    def of(cls, cpu: np.ndarray, count: np.ndarray, milli: np.ndarray, p: np.ndarray) -> TargetWorkload:
        cpu = np.asarray(cpu, dtype=np.float64)
        count = np.asarray(count, dtype=np.int64)
        milli = np.asarray(milli, dtype=np.int64)
        p = np.asarray(p, dtype=np.float64)
        if not (cpu.shape == count.shape == milli.shape == p.shape) or cpu.ndim != 1:
            raise InvalidInputError("target workload columns must be 1-D and of equal length")
        if np.any(p < 0) or (p.size and abs(float(p.sum()) - 1.0) > 1e-6):
            raise InvalidInputError("target workload frequencies must be >= 0 and sum to 1")
        gpu = np.flatnonzero((milli > 0) & (count > 0))
        levels, level_of = np.unique(milli[gpu], return_inverse=True)
        return cls(cpu, count, milli, p, levels.astype(np.int64), level_of.reshape(-1), gpu)

    @classmethod
    def typical(
        cls,
        cpu: np.ndarray,
        count: np.ndarray,
        milli: np.ndarray,
        *,
        coverage_pct: float = 95.0,
        cpu_only: bool = True,
        gpu_weight: float = 0.0,
    ) -> TargetWorkload:
        """The paper's "typical pods": the most frequent distinct (cpu, milli, count) demands that
        together cover ``coverage_pct`` % of the pods (CPU-only pods included unless ``cpu_only`` is
        False), renormalized. Order: frequency descending, then larger CPU, milli, count first.
        ``gpu_weight`` > 0 counts a whole-GPU pod as ``1 + count * gpu_weight`` pods (the
        simulator's GpuResWeight), so multi-GPU pods can enter the set.
        """
        cpu = np.asarray(cpu, dtype=np.float64)
        count = np.asarray(count, dtype=np.int64)
        milli = np.asarray(milli, dtype=np.int64)
        keep = np.ones(cpu.size, dtype=bool) if cpu_only else count > 0
        rows = np.column_stack([cpu, milli, count])[keep]
        if rows.size == 0:
            return cls.of(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
        w = np.ones(rows.shape[0])
        if gpu_weight > 0:
            whole = rows[:, 1] == MILLI
            w[whole] = 1.0 + rows[whole, 2] * gpu_weight
        uniq, inv = np.unique(rows, axis=0, return_inverse=True)
        freq = np.bincount(inv.reshape(-1), weights=w, minlength=uniq.shape[0])
        order = np.lexsort((-uniq[:, 2], -uniq[:, 1], -uniq[:, 0], -freq))
        uniq, freq = uniq[order], freq[order]
        total = float(freq.sum())
        cum = np.cumsum(freq)
        need = coverage_pct * total / 100.0
        k = min(int(np.searchsorted(cum, need, side="left")) + 1, freq.size)  # first prefix reaching it
        uniq, freq = uniq[:k], freq[:k]
        return cls.of(uniq[:, 0], uniq[:, 2], uniq[:, 1], freq / freq.sum())


# ---- the measure -----------------------------------------------------------------------------
def level_stats(dev_left: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per state and level: GPUs with at least the level free (S, J), free milli on the others."""
    d = np.asarray(dev_left)
    ge = d[:, :, None] >= levels[None, None, :]
    cnt = ge.sum(axis=1)
    small = np.where(ge, 0, d[:, :, None]).sum(axis=1).astype(np.float64)
    return cnt, small


def frag_from_stats(
    cpu_left: np.ndarray, total: np.ndarray, cnt: np.ndarray, small: np.ndarray, wl: TargetWorkload
) -> np.ndarray:
    """F for S states from their CPU left, free GPU milli and level statistics."""
    total = np.asarray(total, dtype=np.float64)
    if wl.gpu.size == 0:
        return total * float(wl.p.sum())
    g = wl.gpu
    j = wl.level_of
    ok = (np.asarray(cpu_left)[:, None] >= wl.cpu[g][None, :]) & (cnt[:, j] >= wl.count[g][None, :])
    usable = np.where(ok, total[:, None] - small[:, j], 0.0)
    return total * float(wl.p.sum()) - usable @ wl.p[g]


def fragmentation(cpu_left: np.ndarray, dev_left: np.ndarray, wl: TargetWorkload) -> np.ndarray:
    """F_n for N hosts (exact, from the GPUs themselves)."""
    cnt, small = level_stats(dev_left, wl.levels)
    return frag_from_stats(cpu_left, np.asarray(dev_left).sum(axis=1), cnt, small, wl)


@dataclass(frozen=True)
class HostStats:
    """The measure's per-host inputs for a set of hosts (kept up to date by the simulator, built
    on demand by the live scorer): CPU and free GPU milli, level statistics, F itself, and
    ``first`` (N, G): True on the lowest-numbered GPU of each distinct free amount of a host (a
    fractional pod needs to try only those: GPUs with equal free milli score the same)."""

    cpu: np.ndarray
    total: np.ndarray
    cnt: np.ndarray
    small: np.ndarray
    frag: np.ndarray
    first: np.ndarray

    @classmethod
    def build(cls, cpu_left: np.ndarray, dev_left: np.ndarray, wl: TargetWorkload) -> HostStats:
        cpu = np.asarray(cpu_left, dtype=np.float64)
        d = np.asarray(dev_left)
        cnt, small = level_stats(d, wl.levels)
        total = d.sum(axis=1).astype(np.float64)
        return cls(cpu, total, cnt, small, frag_from_stats(cpu, total, cnt, small, wl), first_of_value(d))

    def take(self, idx: np.ndarray) -> HostStats:
        return HostStats(self.cpu[idx], self.total[idx], self.cnt[idx], self.small[idx], self.frag[idx],
                         self.first[idx])


def first_of_value(dev_left: np.ndarray) -> np.ndarray:
    """(N, G) True where a GPU is the first of its host with that free amount."""
    d = np.asarray(dev_left)
    g = d.shape[1]
    earlier = np.tril(np.ones((g, g), dtype=bool), -1)  # earlier[a, b]: b < a
    same = d[:, :, None] == d[:, None, :]
    return ~np.any(same & earlier[None, :, :], axis=2)


# ---- candidate placements ----------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """Where a pod may go on each candidate host: ``host`` (K,) row into the candidates, ``gpu``
    (K,) the GPU for a fractional pod (-1: the default whole-GPU choice), and the state after."""

    host: np.ndarray
    gpu: np.ndarray
    after: np.ndarray  # F after the placement
    free_after: np.ndarray  # free GPU milli of the host after
    cpu_after: np.ndarray


def options(st: HostStats, dev_left: np.ndarray, pod: Pod, wl: TargetWorkload) -> Options:
    """Every placement option of ``pod`` on the given hosts (``st`` and ``dev_left`` restricted to
    the candidates, where the pod fits) with F after it. A fractional pod has one option per
    distinct free amount among the GPUs with room (first GPU of each); any other pod has one per host
    (its GPUs taken as the paper's simulator does: the first fully free ones for whole GPUs)."""
    d = np.asarray(dev_left)
    lv = wl.levels
    if pod.shares_gpu:
        rows, gpus = np.nonzero(st.first & (d >= pod.milli))
        left = d[rows, gpus].astype(np.int64)
        new = left - pod.milli
        cnt = st.cnt[rows] - (left[:, None] >= lv) + (new[:, None] >= lv)
        small = (st.small[rows] - np.where(left[:, None] < lv, left[:, None], 0)
                 + np.where(new[:, None] < lv, new[:, None], 0))
        cpu = st.cpu[rows] - pod.cpu
        total = st.total[rows] - pod.milli
        return Options(rows, gpus, frag_from_stats(cpu, total, cnt, small, wl), total, cpu)
    rows = np.arange(d.shape[0])
    cpu = st.cpu - pod.cpu
    total = st.total - pod.gpu_milli
    if pod.count == 0:
        after = frag_from_stats(cpu, total, st.cnt, st.small, wl)
    elif pod.milli == MILLI:  # whole GPUs: fully free ones, counted at every level, leave none behind
        after = frag_from_stats(cpu, total, st.cnt - pod.count, st.small, wl)
    else:  # several GPUs, each shared: tightest fitting GPUs first (the simulator's Sub)
        after = fragmentation(cpu, take_devices(d, pod)[1], wl)
    return Options(rows, np.full(rows.size, -1, dtype=np.int64), after, total, cpu)


def take_devices(dev_left: np.ndarray, pod: Pod) -> tuple[np.ndarray, np.ndarray]:
    """GPUs each host would give a non-fractional pod, and the GPUs after: the first fully free ones
    for whole GPUs, else the tightest that fit (first of equals). Returns (N, count) indices, (N, G)."""
    d = np.asarray(dev_left).astype(np.int64)
    big = np.iinfo(np.int64).max
    key = np.where(d >= pod.milli, d if pod.milli < MILLI else 0, big)
    chosen = np.argsort(key, axis=1, kind="stable")[:, : pod.count]
    new = d.copy()
    np.subtract.at(new, (np.arange(d.shape[0])[:, None], chosen), pod.milli)
    return chosen, new


def sigmoid_score(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The paper's FGD score: int(100 * sigmoid(fragmentation decrease / 1000)), truncated."""
    x = (np.asarray(before, dtype=np.float64) - after) / 1000.0
    return (1.0 / (1.0 + np.exp(-x)) * float(SCORE_MAX)).astype(np.int64)


def best_per_host(n: int, host: np.ndarray, gpu: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per host (0..n-1, each with at least one option, options sorted by host then GPU): the
    highest key and the GPU of its first option reaching it."""
    starts = np.flatnonzero(np.r_[True, host[1:] != host[:-1]])
    if starts.size != n:
        raise InvalidInputError("every candidate host needs a placement option")
    best = np.maximum.reduceat(key, starts)
    seg = np.repeat(np.arange(n), np.diff(np.r_[starts, host.size]))
    hit = key == best[seg]
    first_hit = np.full(n, host.size, dtype=np.int64)
    np.minimum.at(first_hit, seg[hit], np.flatnonzero(hit))
    return best, gpu[first_hit]


# ---- node scores -----------------------------------------------------------------------------
GPU_POLICIES = ("fgd", "fgd-exact", "fgd-pack")


def score_hosts(
    policy: str, st: HostStats, dev_left: np.ndarray, pod: Pod, wl: TargetWorkload
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (C,) of the candidate hosts (higher is better; float) and the GPU a fractional pod
    takes on each (-1: the default choice). ``st`` and ``dev_left`` are restricted to candidates."""
    opt = options(st, dev_left, pod, wl)
    n = st.cpu.size
    before = st.frag[opt.host]
    if policy == "fgd":
        key = sigmoid_score(before, opt.after).astype(np.float64)
    elif policy == "fgd-exact":
        key = before - opt.after
    elif policy == "fgd-pack":
        key = sigmoid_score(before, opt.after) * PACK_SPAN + packing_key(opt, st, pod)
    else:
        raise InvalidInputError(f"unknown GPU-sharing policy {policy!r}; known: {', '.join(GPU_POLICIES)}")
    if opt.host.size == n and (opt.gpu < 0).all():
        return key, opt.gpu
    return best_per_host(n, opt.host, opt.gpu, key)


PACK_SPAN = 2.0  # packing_key lies in [0, 1]: it only orders hosts whose FGD scores are equal


def packing_key(opt: Options, st: HostStats, pod: Pod) -> np.ndarray:
    """In [0, 1]: higher for less free GPU milli left on the host after the placement, then less CPU
    left (a host's whole GPUs and CPU stay together on the hosts that remain empty)."""
    gpu_full = 1.0 - opt.free_after / MAX_SPEC_GPU
    cpu_full = 1.0 - np.clip(opt.cpu_after, 0.0, None) / (MAX_SPEC_CPU * 1.001)
    return 0.5 * np.clip(gpu_full, 0.0, 1.0) + 0.5 * 1e-3 * np.clip(cpu_full, 0.0, 1.0)
