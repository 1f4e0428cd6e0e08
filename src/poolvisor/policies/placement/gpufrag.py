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
  most hosts tie and the tie order decides); a pod on a fraction of one GPU tries every GPU with
  room and keeps the best, first GPU of equals; whole-GPU pods take the first fully free GPUs.
* ``fgd-exact``: the same measure as an exact float (no truncation, no sigmoid; rounded to 1e-6
  milli so that identical hosts still tie).
* ``fgd-ri`` (ours): FGD's integer score minus a *residue* penalty for fractional pods, with ties
  broken by an *interleaved fill order* (``fill_positions``). The residue R(L) of a GPU with L milli
  free is the least milli that must stay unused however the workload's per-GPU sizes fill it (an
  unbounded knapsack over the target workload's levels); a fractional pod of m milli on that GPU
  costs ``round((R(L - m) - R(L)) / 40)`` points (40 milli is one FGD point near the sigmoid's
  centre), so a 230 put into a 350 hole (R 30 -> 120) loses 2 points against a fresh GPU. The fill
  order spreads every host shape evenly over the order instead of a random permutation.
* ``fgd-residue`` / ``fgd-interleave``: one of the two changes alone (ablations).
"""

from __future__ import annotations

import functools
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
    # GPU types grouped by (level, count): group level/count, CPU thresholds and the cumulative
    # frequency of a group's types whose CPU fits under each threshold (see frag_from_stats)
    group_level: np.ndarray
    group_count: np.ndarray
    cpu_steps: np.ndarray
    group_cum: np.ndarray
    residue: np.ndarray  # (1001,) R(L): least milli left unused when L milli are filled with the levels

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
        level_of = level_of.reshape(-1)
        if gpu.size == 0:
            e = np.zeros(0, dtype=np.int64)
            return cls(cpu, count, milli, p, e, e, gpu, e, e, np.zeros(0), np.zeros((1, 0)),
                       np.arange(MILLI + 1, dtype=np.float64))
        pairs, group = np.unique(np.column_stack([level_of, count[gpu]]), axis=0, return_inverse=True)
        group = group.reshape(-1)
        steps = np.unique(cpu[gpu])
        cum = np.zeros((steps.size + 1, pairs.shape[0]))
        np.add.at(cum, (np.searchsorted(steps, cpu[gpu], side="left") + 1, group), p[gpu])
        return cls(cpu, count, milli, p, levels.astype(np.int64), level_of, gpu,
                   pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), steps, np.cumsum(cum, axis=0),
                   residue_table(levels))

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


def residue_table(levels: np.ndarray) -> np.ndarray:
    """R(L) for L = 0..1000: the least free milli a GPU with L free keeps when filled with any
    number of pods of the given per-GPU sizes (unbounded knapsack, exact). Memoized per size set:
    a live pool re-learns its target workload after each placement, and its sizes rarely change."""
    sizes = tuple(int(x) for x in np.unique(levels) if 0 < x <= MILLI)
    return _residue(sizes).copy()


@functools.lru_cache(maxsize=256)
def _residue(sizes: tuple[int, ...]) -> np.ndarray:
    best = np.arange(MILLI + 1, dtype=np.float64)
    for free in range(1, MILLI + 1):
        for m in sizes:
            if m <= free and best[free - m] < best[free]:
                best[free] = best[free - m]
    return best


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
    # frequency of each (level, count) group's types whose CPU demand fits the CPU left
    fits_cpu = wl.group_cum[np.searchsorted(wl.cpu_steps, cpu_left, side="right")]
    j = wl.group_level
    usable = np.where(cnt[:, j] >= wl.group_count, total[:, None] - small[:, j], 0.0)
    return total * float(wl.p.sum()) - (usable * fits_cpu).sum(axis=1)


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

    def update(self, h: int, cpu_left: float, dev_row: np.ndarray, wl: TargetWorkload) -> None:
        """Recompute host h after its CPU or GPUs changed (the same statistics as ``build``)."""
        row = np.asarray(dev_row)
        ge = row[:, None] >= wl.levels[None, :]
        self.cnt[h] = ge.sum(axis=0)
        self.small[h] = (row[:, None] * ~ge).sum(axis=0)
        self.cpu[h] = cpu_left
        self.total[h] = float(row.sum())
        self.frag[h] = frag_from_stats(self.cpu[h : h + 1], self.total[h : h + 1], self.cnt[h : h + 1],
                                       self.small[h : h + 1], wl)[0]
        first = np.zeros(row.size, dtype=bool)
        first[np.unique(row, return_index=True)[1]] = True
        self.first[h] = first


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
    """Where a pod may go: ``row`` (K,) index into the candidate list, ``gpu`` (K,) the GPU a
    fractional pod takes (-1: the default whole-GPU choice), the host's F before and after."""

    row: np.ndarray
    gpu: np.ndarray
    before: np.ndarray  # F of the host before
    after: np.ndarray  # F after the placement


def options(st: HostStats, dev_left: np.ndarray, cand: np.ndarray, pod: Pod, wl: TargetWorkload) -> Options:
    """Every placement option of ``pod`` on the candidate hosts ``cand`` (indices into ``st`` and
    ``dev_left``; the pod fits on each) with F before and after. A fractional pod has one option per
    distinct free amount among the GPUs with room (the first GPU of each); any other pod has one per
    host, its GPUs taken as the paper's simulator does (the first fully free ones for whole GPUs)."""
    lv = wl.levels
    if pod.shares_gpu:
        d = dev_left[cand]
        rows, gpus = np.nonzero(st.first[cand] & (d >= pod.milli))
        h = cand[rows]
        left = d[rows, gpus].astype(np.int64)
        new = left - pod.milli
        cnt = st.cnt[h] - (left[:, None] >= lv) + (new[:, None] >= lv)
        small = (st.small[h] - np.where(left[:, None] < lv, left[:, None], 0)
                 + np.where(new[:, None] < lv, new[:, None], 0))
        cpu = st.cpu[h] - pod.cpu
        total = st.total[h] - pod.milli
        return Options(rows, gpus, st.frag[h], frag_from_stats(cpu, total, cnt, small, wl))
    rows = np.arange(cand.size)
    cpu = st.cpu[cand] - pod.cpu
    total = st.total[cand] - pod.gpu_milli
    if pod.count == 0:
        after = frag_from_stats(cpu, total, st.cnt[cand], st.small[cand], wl)
    elif pod.milli == MILLI:  # whole GPUs: fully free ones, counted at every level, leave none behind
        after = frag_from_stats(cpu, total, st.cnt[cand] - pod.count, st.small[cand], wl)
    else:  # several GPUs, each shared: tightest fitting GPUs first (the simulator's Sub)
        after = fragmentation(cpu, take_devices(dev_left[cand], pod)[1], wl)
    return Options(rows, np.full(rows.size, -1, dtype=np.int64), st.frag[cand], after)


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
    """The paper's FGD score: int(100 * sigmoid(fragmentation decrease / 1000)), truncated.

    The decrease is rounded to 1e-6 milli first: a placement that changes nothing (a CPU-only pod
    that leaves every type fitting) must score exactly 50, as in the simulator, not 49 when the
    float sums of "before" and "after" differ in their last bits."""
    x = np.round(np.asarray(before, dtype=np.float64) - after, 6) / 1000.0
    return (1.0 / (1.0 + np.exp(-x)) * float(SCORE_MAX)).astype(np.int64)


def best_per_row(n: int, row: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate (0..n-1, each with at least one option; options sorted by row then GPU): the
    highest key and the index of the first option reaching it."""
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    if starts.size != n:
        raise InvalidInputError("every candidate host needs a placement option")
    best = np.maximum.reduceat(key, starts)
    seg = np.repeat(np.arange(n), np.diff(np.r_[starts, row.size]))
    hit = np.flatnonzero(key == best[seg])
    first_hit = np.full(n, row.size, dtype=np.int64)
    np.minimum.at(first_hit, seg[hit], hit)
    return best, first_hit


# ---- node scores -----------------------------------------------------------------------------
GPU_POLICIES = ("fgd", "fgd-exact", "fgd-residue", "fgd-interleave", "fgd-ri")
FILL_POLICIES = ("fgd-interleave", "fgd-ri")  # break ties by an interleaved fill order
RESIDUE_POINT = 40.0  # milli of residue per FGD point: 100 * sigmoid'(0) / 1000 = one point per 40 milli
FILL_WEIGHT = 0.9  # the fill term stays below one FGD point: it only orders hosts of equal score


def residue_penalty(left: np.ndarray, pod: Pod, wl: TargetWorkload) -> np.ndarray:
    """FGD points a fractional pod loses for the residue it leaves on GPUs with ``left`` milli free."""
    left = np.asarray(left, dtype=np.int64)
    return np.round((wl.residue[left - pod.milli] - wl.residue[left]) / RESIDUE_POINT)


@dataclass(frozen=True)
class HostScores:
    """Per candidate host: the score (higher is better) and what it is made of."""

    key: np.ndarray  # the policy's score
    gpu: np.ndarray  # GPU a fractional pod takes (-1: whole GPUs, the first fully free ones)
    before: np.ndarray  # fragmentation before (milli GPU)
    after: np.ndarray  # fragmentation after the placement on that GPU
    points: np.ndarray  # the paper's FGD score (0..100)
    penalty: np.ndarray  # residue penalty in FGD points (fgd-residue, fgd-ri)
    fill: np.ndarray  # fill-order term added (fgd-interleave, fgd-ri)


def score_details(
    policy: str,
    st: HostStats,
    dev_left: np.ndarray,
    cand: np.ndarray,
    pod: Pod,
    wl: TargetWorkload,
    fill: np.ndarray | None = None,
) -> HostScores:
    """Scores of the candidate hosts ``cand`` (indices into ``st`` and ``dev_left``; the pod fits on
    each) under one GPU-sharing policy, with their parts. ``fill`` (N,) in [0, 1): the hosts' fill
    order positions (lower first), needed by the interleaving policies."""
    if policy not in GPU_POLICIES:
        raise InvalidInputError(f"unknown GPU-sharing policy {policy!r}; known: {', '.join(GPU_POLICIES)}")
    if policy in FILL_POLICIES and fill is None:
        raise InvalidInputError(f"{policy} needs the hosts' fill order")
    opt = options(st, dev_left, cand, pod, wl)
    points = sigmoid_score(opt.before, opt.after).astype(np.float64)
    penalty = np.zeros(points.size)
    if policy in ("fgd-residue", "fgd-ri") and pod.shares_gpu:
        penalty = residue_penalty(dev_left[cand[opt.row], opt.gpu], pod, wl)
    # exact: rounded to 1e-6 milli, so that equal hosts tie exactly (float sums of identical states
    # can differ in the last bits with their position in the batch) and the tie rule decides
    key = np.round(opt.before - opt.after, 6) if policy == "fgd-exact" else points - penalty
    pick = np.arange(cand.size)
    if pod.shares_gpu:  # the best option of each host (its first GPU among equals)
        key, pick = best_per_row(cand.size, opt.row, key)
    term = np.zeros(cand.size)
    if policy in FILL_POLICIES and fill is not None:
        term = FILL_WEIGHT * (1.0 - np.asarray(fill, dtype=np.float64)[cand])
    return HostScores(key + term, opt.gpu[pick], opt.before[pick], opt.after[pick], points[pick],
                      penalty[pick], term)


def score_hosts(
    policy: str,
    st: HostStats,
    dev_left: np.ndarray,
    cand: np.ndarray,
    pod: Pod,
    wl: TargetWorkload,
    fill: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``score_details`` reduced to the scores (C,) and the GPU of a fractional pod on each host."""
    d = score_details(policy, st, dev_left, cand, pod, wl, fill)
    return d.key, d.gpu


def fill_positions(shape: np.ndarray, within: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Interleaved fill order: (N,) positions in [0, 1), lower filled first.

    ``shape`` (N,) int class of each host (hosts of one class are interchangeable: same GPUs, CPU,
    memory), ``within`` (N,) the order of the hosts inside their class (lower first), ``phase``
    (classes,) in [0, 1). The k-th of the n hosts of a class sits at (k + phase) / n, so every prefix
    of the order holds each class in proportion to its size (a low-discrepancy interleaving, where a
    random permutation lets runs of one shape fill up together)."""
    shape = np.asarray(shape)
    pos = np.zeros(shape.size)
    for c in np.unique(shape):
        members = np.flatnonzero(shape == c)
        members = members[np.argsort(np.asarray(within)[members], kind="stable")]
        pos[members] = (np.arange(members.size) + float(phase[c])) / members.size
    return np.minimum(pos, np.nextafter(1.0, 0.0))
