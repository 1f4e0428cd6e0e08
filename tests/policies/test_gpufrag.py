"""The GPU-sharing core (policies/placement/gpufrag.py) against plain re-statements of its rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.placement import gpufrag as gf

WL = gf.TargetWorkload.of(
    cpu=np.array([4000, 12000, 3000, 8000, 30000, 6000, 2000]),
    count=np.array([1, 1, 1, 0, 1, 2, 1]),
    milli=np.array([320, 1000, 810, 0, 1000, 1000, 470]),
    p=np.array([0.2, 0.25, 0.15, 0.1, 0.05, 0.05, 0.2]),
)


def reference_frag(cpu: float, gpus: list[int], wl: gf.TargetWorkload) -> float:
    """The paper's per-type fragment, type by type: all free GPU when the type needs no GPU or does
    not fit (CPU, or too few GPUs with its milli free), else the free milli of the GPUs holding less
    than its per-GPU demand."""
    total = sum(gpus)
    f = 0.0
    for c, n, m, p in zip(wl.cpu, wl.count, wl.milli, wl.p, strict=True):
        if m == 0 or cpu < c or sum(1 for g in gpus if g >= m) < n:
            f += p * total
        else:
            f += p * sum(g for g in gpus if g < m)
    return f


def random_states(rng: np.random.Generator, n: int, g: int = 8) -> tuple[np.ndarray, np.ndarray]:
    cpu = rng.choice([0, 2500, 4000, 9000, 12000, 40000, 96000], size=n).astype(float)
    ngpu = rng.choice([1, 2, 4, 8], size=n)
    left = rng.choice([0, 30, 190, 320, 470, 530, 810, 1000, 1000], size=(n, g))
    dev = np.where(np.arange(g)[None, :] < ngpu[:, None], left, 0)
    return cpu, dev


def test_fragmentation_equals_the_per_type_definition() -> None:
    cpu, dev = random_states(np.random.default_rng(1), 300)
    got = gf.fragmentation(cpu, dev, WL)
    want = [reference_frag(c, d.tolist(), WL) for c, d in zip(cpu, dev, strict=True)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert gf.fragmentation(np.array([1e6]), np.full((1, 8), 1000), WL)[0] == pytest.approx(0.1 * 8000)


@pytest.mark.parametrize("pod", [gf.Pod(4000, 1, 320), gf.Pod(3000, 1, 810), gf.Pod(12000, 1, 1000),
                                 gf.Pod(6000, 2, 1000), gf.Pod(8000, 0, 0), gf.Pod(1000, 2, 400)])
def test_options_equal_the_fragmentation_of_the_state_after(pod: gf.Pod) -> None:
    """Incremental after-values (from level statistics) equal a rebuild of each host's GPUs."""
    cpu, dev = random_states(np.random.default_rng(2), 200)
    st = gf.HostStats.build(cpu, dev, WL)
    fits = (cpu >= pod.cpu) & (np.count_nonzero(dev >= max(pod.milli, 1), axis=1) >= pod.count)
    cand = np.flatnonzero(fits)
    opt = gf.options(st, dev, cand, pod, WL)
    for k in range(opt.row.size):
        h = cand[opt.row[k]]
        new = dev[h].copy()
        if pod.shares_gpu:
            assert st.first[h, opt.gpu[k]]  # the first GPU with that free amount
            new[opt.gpu[k]] -= pod.milli
        elif pod.count:
            new = gf.take_devices(dev[h][None, :], pod)[1][0]
        want = reference_frag(cpu[h] - pod.cpu, new.tolist(), WL)
        assert opt.after[k] == pytest.approx(want, abs=1e-9)
        assert opt.before[k] == pytest.approx(reference_frag(cpu[h], dev[h].tolist(), WL), abs=1e-9)
    if pod.shares_gpu:  # one option per distinct free amount with room
        per_host = {h: len({v for v in dev[h] if v >= pod.milli}) for h in cand}
        assert opt.row.size == sum(per_host.values())


def test_take_devices_first_free_for_whole_gpus_tightest_for_fractions() -> None:
    dev = np.array([[1000, 300, 1000, 600, 1000]])
    chosen, new = gf.take_devices(dev, gf.Pod(1, 2, 1000))
    assert chosen[0].tolist() == [0, 2] and new[0].tolist() == [0, 300, 0, 600, 1000]
    chosen, new = gf.take_devices(dev, gf.Pod(1, 2, 300))
    assert chosen[0].tolist() == [1, 3] and new[0].tolist() == [1000, 0, 1000, 300, 1000]


def test_typical_pods_cover_95_percent_most_frequent_first() -> None:
    # 60 x A, 25 x B (CPU-only), 10 x C, 4 x D, 1 x E: 95 % is reached with A, B, C
    spec = [((4000, 1, 320), 60), ((8000, 0, 0), 25), ((12000, 1, 1000), 10), ((3000, 1, 810), 4),
            ((2000, 1, 160), 1)]
    rows = np.array([r for r, n in spec for _ in range(n)], dtype=float)
    wl = gf.TargetWorkload.typical(rows[:, 0], rows[:, 1].astype(int), rows[:, 2].astype(int))
    assert len(wl) == 3 and wl.cpu.tolist() == [4000, 8000, 12000]
    np.testing.assert_allclose(wl.p, [60 / 95, 25 / 95, 10 / 95])
    no_cpu = gf.TargetWorkload.typical(rows[:, 0], rows[:, 1].astype(int), rows[:, 2].astype(int),
                                       cpu_only=False)
    assert 0 not in no_cpu.milli.tolist()
    # equal counts: the larger CPU comes first (the simulator's order), so it is the one kept
    eq = np.array([[1000, 1, 500]] * 5 + [[2000, 1, 500]] * 5, dtype=float)
    one = gf.TargetWorkload.typical(eq[:, 0], eq[:, 1].astype(int), eq[:, 2].astype(int), coverage_pct=50)
    assert one.cpu.tolist() == [2000]


def test_residue_is_the_least_unfillable_remainder() -> None:
    levels = np.array([320, 470, 1000])
    r = gf.residue_table(levels)
    for free in (0, 100, 350, 640, 790, 940, 1000):
        best = min(free - s for k in range(4) for combo in itertools.combinations_with_replacement(levels, k)
                   if (s := sum(combo)) <= free)
        assert r[free] == best
    assert r[350] == 30 and r[120] == 120 and r[1000] == 0


def test_scores_fgd_points_residue_and_fill() -> None:
    points = gf.sigmoid_score(np.array([500.0, 0.0, 0.0]), np.array([500.0, 1000.0, -1000.0]))
    assert points.tolist() == [50, 26, 73]
    cpu, dev = random_states(np.random.default_rng(3), 60)
    st = gf.HostStats.build(cpu, dev, WL)
    pod = gf.Pod(2000, 1, 320)
    cand = np.flatnonzero((cpu >= pod.cpu) & (dev.max(axis=1) >= pod.milli))
    fill = np.linspace(0, 0.99, cpu.size)
    base = gf.score_details("fgd", st, dev, cand, pod, WL)
    ours = gf.score_details("fgd-ri", st, dev, cand, pod, WL, fill)
    np.testing.assert_allclose(ours.key, ours.points - ours.penalty + 0.9 * (1 - fill[cand]))
    assert (ours.penalty >= 0).any() and set(np.unique(base.points)) <= set(range(101))
    left = dev[cand, ours.gpu]
    np.testing.assert_array_equal(ours.penalty, np.round((WL.residue[left - 320] - WL.residue[left]) / 40.0))
    with pytest.raises(InvalidInputError, match="fill order"):
        gf.score_details("fgd-ri", st, dev, cand, pod, WL)
    with pytest.raises(InvalidInputError, match="unknown GPU-sharing policy"):
        gf.score_details("nope", st, dev, cand, pod, WL)


def test_fractional_pod_takes_the_first_gpu_of_the_best_options() -> None:
    # two identical 530-free GPUs and a fresh one: the 470 pod prefers a 530 hole, the first of them
    dev = np.array([[1000, 530, 530, 0]])
    st = gf.HostStats.build(np.array([50000.0]), dev, WL)
    d = gf.score_details("fgd", st, dev, np.array([0]), gf.Pod(2000, 1, 470), WL)
    assert d.gpu.tolist() == [1]


def test_fill_positions_interleave_every_shape_in_proportion() -> None:
    shape = np.array([0] * 60 + [1] * 30 + [2] * 10)
    rng = np.random.default_rng(4)
    within = rng.permutation(shape.size)
    pos = gf.fill_positions(shape, within, np.array([0.2, 0.7, 0.5]))
    order = np.argsort(pos)
    for k in range(1, shape.size + 1):  # every prefix holds each shape in proportion (+-1)
        counts = np.bincount(shape[order[:k]], minlength=3)
        assert np.all(np.abs(counts - k * np.array([0.6, 0.3, 0.1])) <= 1.0 + 1e-9)
    members = np.flatnonzero(shape == 2)
    assert np.argsort(pos[members]).tolist() == np.argsort(within[members]).tolist()
    assert pos.min() >= 0 and pos.max() < 1


def test_target_workload_is_validated() -> None:
    with pytest.raises(InvalidInputError, match="sum to 1"):
        gf.TargetWorkload.of(np.array([1.0]), np.array([1]), np.array([500]), np.array([0.5]))
    empty = gf.TargetWorkload.of(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
    assert gf.fragmentation(np.array([1.0]), np.array([[1000, 300]]), empty)[0] == 0.0
