"""PABFD exists once as a numpy definition (pabfd.place) and once compiled (kernels.place): on
generated pools both choose the same hosts and leave the same host state, bit for bit, with and
without the class-of-empty-hosts shortcut; the overload check's two forms agree likewise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from poolvisor.policies.balancing import kernels, pabfd
from poolvisor.policies.balancing.detection import Detector
from poolvisor.policies.balancing.overload import IQR, LINEAR, MAD, THR, Rule, overloaded, rule_for
from poolvisor.policies.balancing.pabfd import (
    ALLOC,
    AVAIL,
    HLEN,
    LR_G,
    LR_M,
    MAX_RAM,
    N_ROWS,
    P_NOW,
    PE,
    RAM_FREE,
    REQ,
    SLOTS,
    TOTAL,
    VmColumns,
)
from poolvisor.policies.balancing.power import HP_ML110_G4, HP_ML110_G5, PowerTable

POWER = PowerTable.of(HP_ML110_G4, HP_ML110_G5)
L = 30
DETECTORS = {
    "thr": Detector("thr", 0.8),
    "lr": Detector("lr", 1.2, weighted=False),
    "lr-weighted": Detector("lr", 1.2),
    "iqr": Detector("iqr", 1.5),
    "mad": Detector("mad", 2.5),
}


def _compiled() -> None:
    if not kernels.available():
        pytest.skip("numba not installed (optional 'fast' extra): only the numpy definition exists")


def _history(rng: np.random.Generator, n: int, lengths: np.ndarray, level: float) -> np.ndarray:
    """Rows with ``lengths`` values (newest first) and zeros after, as the simulator keeps them."""
    h = rng.uniform(0.0, level, (n, L)).round(3)
    h[np.arange(L)[None, :] >= lengths[:, None]] = 0.0
    return h


@dataclass
class Pool:
    vms: np.ndarray
    vm: VmColumns
    rows: np.ndarray
    model: np.ndarray
    htype: np.ndarray
    hist: np.ndarray


def make_pool(seed: int, hosts: int, n_vms: int, batch: int, d: Detector, created: bool) -> Pool:
    """A pool with many ties: two host types, a few request sizes, some identical empty hosts."""
    rng = np.random.default_rng(seed)
    model = rng.integers(0, 2, hosts).astype(np.intp)
    htype = model.copy()
    total = np.where(model == 0, 3720.0, 5320.0)
    busy = rng.random(hosts) < 0.6
    alloc = np.where(busy, rng.choice([250.0, 500.0, 1000.0, 2500.0, 3000.0], hosts), 0.0)
    alloc = np.minimum(alloc, total)
    rows = np.zeros((N_ROWS, hosts))
    rows[TOTAL], rows[PE], rows[ALLOC] = total, total / 2, alloc
    rows[AVAIL] = np.where(rng.random(hosts) < 0.8, total - alloc, 0.0)
    rows[REQ] = alloc * rng.choice([1.0, 1.0, 1.2], hosts)
    rows[RAM_FREE] = rng.choice([0.0, 1000.0, 2000.0, 4096.0], hosts)
    lengths = np.where(busy, rng.integers(0, L + 1, hosts), 0)
    hist = _history(rng, hosts, lengths, 0.8)
    rows[HLEN] = lengths
    rows[MAX_RAM] = np.where(busy, rng.choice([613.0, 870.0, 1740.0], hosts), -np.inf)
    u = np.minimum(alloc / total, 1.0)
    rows[P_NOW] = np.where(rng.random(hosts) < 0.3, 0.0, POWER.power(model, u))
    rows[SLOTS] = rng.choice([1.0, 2.0, 3.0, np.inf], hosts)
    if d.linear:
        rows[LR_M], rows[LR_G] = d.lr_parts(hist)
    req = rng.choice([250.0, 500.0, 1000.0, 2000.0, 2500.0], n_vms) * rng.choice([1.0, 0.5, 0.25], n_vms)
    ram = rng.choice([613.0, 870.0, 1740.0], n_vms)
    vm_len = rng.integers(0, L + 1, n_vms)
    share = _history(rng, n_vms, vm_len, 0.5)
    contrib = np.ascontiguousarray(np.stack([share * 1000.0 / 3720.0, share * 1000.0 / 5320.0]))
    vm_m, vm_g = d.lr_parts(contrib) if d.linear else (np.zeros((0, 0)), np.zeros((0, 0)))
    vm = VmColumns(
        req=req, settled=np.zeros(n_vms) if created else req, ram=ram, hlen=vm_len.astype(np.float64),
        lr_m=vm_m, lr_g=vm_g, contrib=contrib,
    )  # fmt: skip
    vms = rng.permutation(n_vms)[:batch].astype(np.intp)
    return Pool(vms, vm, rows, model, htype, hist)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    hosts=st.integers(1, 90),
    n_vms=st.integers(1, 25),
    batch=st.integers(1, 25),
    kind=st.sampled_from(sorted(DETECTORS)),
    created=st.booleans(),
    check_ram=st.booleans(),
    measured=st.booleans(),
    all_or_nothing=st.booleans(),
)
def test_compiled_pabfd_is_the_numpy_definition(
    seed: int,
    hosts: int,
    n_vms: int,
    batch: int,
    kind: str,
    created: bool,
    check_ram: bool,
    measured: bool,
    all_or_nothing: bool,
) -> None:
    _compiled()
    d = DETECTORS[kind]
    p = make_pool(seed, hosts, n_vms, min(batch, n_vms), d, created)
    rule = rule_for(d, L, 62.5)
    assert rule.mode in (THR, LINEAR, IQR, MAD)  # the compiled rules
    with_hist = rule.mode in (IQR, MAD)
    flags = (check_ram, measured, all_or_nothing)

    rows_ref, hist_ref = p.rows.copy(), p.hist.copy()
    ref = pabfd.place(p.vms, p.vm, rows_ref, p.model, p.htype, hist_ref, rule, d, POWER, *flags)

    rows_c, hist_c = p.rows.copy(), p.hist.copy()
    table = (POWER._flat, POWER._delta)
    got = kernels.place(p.vms, p.vm, rows_c, p.model, p.htype, hist_c, rule, *table, *flags)

    empty = (p.rows[ALLOC] == 0) & ~p.hist.any(axis=1)
    classes = kernels.empty_host_classes(p.rows, p.model, p.htype, empty)
    rows_k, hist_k = p.rows.copy(), p.hist.copy()
    got_k = kernels.place(
        p.vms, p.vm, rows_k, p.model, p.htype, hist_k, rule, *table, *flags, classes
    )

    event("batch refused" if ref is None else f"placed: {(ref >= 0).any()}, refused: {(ref < 0).any()}")
    event(f"identical empty hosts: {bool((np.diff(classes[1]) > 1).any())}")  # --hypothesis-show-statistics
    for out, rows, hist in ((got, rows_c, hist_c), (got_k, rows_k, hist_k)):
        assert (out is None) == (ref is None)
        if ref is not None:
            assert out is not None and out.tolist() == ref.tolist()
        assert np.array_equal(rows, rows_ref)  # bit for bit: same IEEE operations in the same order
        if with_hist:
            assert np.array_equal(hist, hist_ref)


def test_generated_pools_place_vms_and_hit_ties() -> None:
    """The generator is not vacuous: it yields placements, refusals and identical empty hosts."""
    d = DETECTORS["thr"]
    placed = refused = tied = 0
    for seed in range(40):
        p = make_pool(seed, 4 if seed % 2 else 60, 20, 20, d, False)  # small pools refuse VMs
        rule = rule_for(d, L, 62.5)
        flags = (False, False, False)
        out = pabfd.place(p.vms, p.vm, p.rows.copy(), p.model, p.htype, p.hist, rule, d, POWER, *flags)
        assert out is not None
        placed += int((out >= 0).sum())
        refused += int((out < 0).sum())
        empty = (p.rows[ALLOC] == 0) & ~p.hist.any(axis=1)
        start, _ = kernels.identical_classes(
            np.concatenate([p.rows[:, empty], p.model[None, empty], p.htype[None, empty]]).T.astype(float)
        )
        tied += int((np.diff(start) > 1).sum())
    assert placed > 100 and refused > 10 and tied > 10


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(sorted(DETECTORS)),
    ru=st.floats(0.0, 1.5),
    hlen=st.integers(0, L),
    max_ram=st.sampled_from([-np.inf, 613.0, 870.0, 1740.0, 9000.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_overload_check_is_the_numpy_one(
    kind: str, ru: float, hlen: int, max_ram: float, seed: int
) -> None:
    _compiled()
    d = DETECTORS[kind]
    rule = rule_for(d, L, 62.5)
    hist = _history(np.random.default_rng(seed), 1, np.array([hlen]), 1.0)
    m, g = d.lr_parts(hist)
    want = overloaded(rule, d, np.array([ru]), np.array([float(hlen)]), np.array([max_ram]), m, g, hist)[0]
    spread = kernels.spread(hist[0], hlen, rule.mode) if rule.mode in (IQR, MAD) and hlen >= 12 else 0.0
    got = kernels.overloaded(rule, ru, float(hlen), max_ram, float(m[0]), float(g[0]), spread)
    assert bool(got) == bool(want)


def test_rule_without_history_is_the_fallback_threshold() -> None:
    """At t = 0 there is no history: every history-based detector is its fallback threshold."""
    for kind in ("iqr", "mad", "lr", "lrr"):
        rule = rule_for(Detector(kind, 1.5, fallback=0.7), 0, 62.5)
        assert rule.mode == THR and rule.param == 0.7
    thr = rule_for(Detector("thr", 0.8), 30, 62.5)
    assert isinstance(thr, Rule) and (thr.mode, thr.param) == (THR, 0.8)
    assert rule_for(Detector("lr", 1.2, weighted=False), 30, 62.5).mode == LINEAR
    assert rule_for(Detector("lrr", 1.2, weighted=False), 30, 62.5).mode == LINEAR  # CloudSim's LRR is LR
    assert rule_for(Detector("lrr", 1.2), 30, 62.5).mode not in (THR, LINEAR, IQR, MAD)  # robust: numpy only
