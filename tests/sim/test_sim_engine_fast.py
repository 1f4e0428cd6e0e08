"""The engine's cheap per-event paths give exactly what the plain formulations give: compiled CPU
sharing vs numpy, packed key sort vs argsort, one-step completions vs one by one, history window
vs shifting, cached trace columns vs utilization_at."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poolvisor.bench.sim_scale import scale_scenario
from poolvisor.sim import engine
from poolvisor.sim.engine import HISTORY, PolicySpec, Simulator, allocate, key_order, utilization_at
from poolvisor.sim.scenario import Scenario


def _scenario(vms: int = 600, hosts: int = 60, steps: int = 40, seed: int = 4) -> Scenario:
    rng = np.random.default_rng(seed)
    util = np.clip(rng.gamma(2.0, 14.0, size=(vms, 289)), 0, 100).round()
    return dataclasses.replace(scale_scenario(util, hosts), end_s=300.0 * steps + 0.1)


def _inputs(seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    V, H = 3000, 40
    req = rng.gamma(2.0, 400.0, V).round(1)
    req[rng.random(V) < 0.05] = 0.0
    host_of = rng.integers(0, H, V)
    host_of[rng.random(V) < 0.1] = -1
    key = rng.permutation(10 * V)[:V].astype(np.int64)
    in_mig = (rng.random(V) < 0.1) & (host_of >= 0)
    f_vm = np.flatnonzero(in_mig)
    f_dst = rng.integers(0, H, f_vm.size)
    f_key = 10 * V + rng.permutation(f_vm.size).astype(np.int64)
    pe = np.where(np.arange(H) % 2 == 0, 1860.0, 2660.0)
    total = 2 * pe
    return req, host_of, key, in_mig, f_vm, f_dst, f_key, pe, total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_sharing_matches_numpy_bit_for_bit(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if not engine._share_compiler.ready():
        pytest.skip("numba not installed or POOLVISOR_NO_JIT=1: only the numpy path exists")
    args = _inputs(seed)
    fast = allocate(*args)
    monkeypatch.setattr(engine, "_share_jit", None)
    plain = allocate(*args)
    for name in ("util_mips", "req_mips", "alloc_sum", "avail", "vm_alloc", "vm_req", "vm_in_mig", "order"):
        assert np.array_equal(getattr(fast, name), getattr(plain, name)), name
    assert (fast.util_mips / args[-1] > 0.99).sum() > 5  # several hosts oversubscribed (floored shares)
    # the numpy path with an argsort by key (the former formulation) agrees too
    req, host_of, key, in_mig, f_vm, f_dst, f_key, pe, total = args
    alive = np.flatnonzero(host_of >= 0)
    idx = np.argsort(np.concatenate([key[alive], f_key]))
    ref = engine._allocate_numpy(req, host_of, in_mig, alive, f_vm, f_dst, idx, pe, total, plain.vm_req)
    assert np.array_equal(ref.util_mips, fast.util_mips) and np.array_equal(ref.order, fast.order)


def test_wide_keys_and_a_shared_workspace_give_the_same_sharing() -> None:
    req, host_of, key, in_mig, f_vm, f_dst, f_key, pe, total = _inputs(5)
    base = allocate(req, host_of, key, in_mig, f_vm, f_dst, f_key, pe, total)
    wide = key + (1 << 50)  # too wide to pack with the entry ids: the numpy path, same order
    a = allocate(req, host_of, wide, in_mig, f_vm, f_dst, f_key + (1 << 50), pe, total)
    work = engine.Workspace()
    small = allocate(
        req[:100], host_of[:100], key[:100], in_mig[:100], f_vm[:0], f_dst[:0], f_key[:0], pe, total, work
    )
    b = allocate(req, host_of, key, in_mig, f_vm, f_dst, f_key, pe, total, work)  # grows the scratch
    c = allocate(
        req[:100], host_of[:100], key[:100], in_mig[:100], f_vm[:0], f_dst[:0], f_key[:0], pe, total, work
    )
    for name in ("util_mips", "alloc_sum", "avail", "vm_alloc", "order"):
        assert np.array_equal(getattr(a, name), getattr(base, name)), name
        assert np.array_equal(getattr(b, name), getattr(base, name)), name
        assert np.array_equal(getattr(c, name), getattr(small, name)), name


def test_key_order_is_the_argsort_of_unique_keys() -> None:
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 1000):
        keys = rng.permutation(50 * n + 1)[:n].astype(np.int64)
        assert np.array_equal(key_order(keys), np.argsort(keys))
    huge = np.array([1 << 61, 5, 1 << 60], dtype=np.int64)  # too wide to pack: plain argsort
    assert key_order(huge).tolist() == [1, 2, 0]
    hosts = rng.integers(0, 30, 500)  # repeated values: ties keep their position (a stable sort)
    assert np.array_equal(key_order(hosts), np.argsort(hosts, kind="stable"))


@pytest.mark.parametrize("compat", [False, True])
def test_one_instant_completes_in_queue_order(compat: bool) -> None:
    sc = _scenario(vms=8, hosts=6)
    sim = Simulator(sc, PolicySpec.parse("thr-mmt", None), compat=compat)
    sim.initial_placement()
    k0 = sim.next_key
    for dup in (False, True):  # distinct VMs (one vectorized step) and a VM twice (one by one)
        vms = np.array([0, 1, 0 if dup else 2])
        sim.in_mig[vms] = True
        np.add.at(sim.in_flight, vms, 1)
        sim.q_tc = np.array([7.0, 7.0, 7.0, 9.0])
        sim.q_seq = np.arange(4, dtype=np.int64)
        sim.q_vm = np.array([*vms, 3], dtype=np.int64)
        sim.q_dst = np.array([3, 4, 5, 1], dtype=np.int64)
        sim.q_key = np.arange(100, 104, dtype=np.int64)
        sim.q_head = 0
        sim._complete(3)
        assert sim.q_head == 3 and sim.next_key == k0 + 3
        if dup:  # the later copy wins, with the later key; the flag falls once both arrived
            assert sim.host_of[[0, 1]].tolist() == [5, 4] and sim.key[[0, 1]].tolist() == [k0 + 2, k0 + 1]
        else:
            assert sim.host_of[vms].tolist() == [3, 4, 5]
            assert sim.key[vms].tolist() == [k0, k0 + 1, k0 + 2]
        assert not sim.in_mig[vms].any() and not sim.in_flight.any()
        k0 = sim.next_key
    # in the default mode a VM with another copy still in flight keeps its flag
    sim.in_mig[[6, 7]] = True
    sim.in_flight[[6, 7]] = [2, 1]
    sim.q_tc, sim.q_seq = np.array([3.0, 3.0]), np.arange(2, dtype=np.int64)
    sim.q_vm, sim.q_dst, sim.q_key = np.array([6, 7]), np.array([0, 0]), np.array([1, 2])
    sim.q_head = 0
    sim._complete(2)
    assert sim.in_mig[[6, 7]].tolist() == [not compat, False]


def test_history_window_shifts_like_the_array() -> None:
    sim = Simulator(_scenario(vms=20, hosts=4), PolicySpec.parse("lr-mmt", None), compat=False)
    rng = np.random.default_rng(1)
    plain = np.zeros((20, HISTORY))
    for _ in range(3 * HISTORY + 5):  # wraps the buffer three times
        u = rng.random(20)
        plain[:, 1:] = plain[:, :-1]
        plain[:, 0] = u
        sim._push_history(u)
        assert np.array_equal(sim.vm_hist, plain)


def test_cached_columns_match_utilization_at() -> None:
    sc = _scenario(vms=50, hosts=5)
    sim = Simulator(sc, PolicySpec.parse("thr-mmt", None), compat=False)
    rng = np.random.default_rng(2)
    for t in sorted([*rng.uniform(0, 86000, 200), *np.arange(0, 86000, 300.0), 300.1, 450.0]):
        assert np.array_equal(sim._util(float(t)), utilization_at(sc.util, float(t), sc.interval_s))


@pytest.mark.parametrize(("policy", "compat"), [("thr-mmt", False), ("lr-mmt", False), ("mad-mmt", True)])
def test_whole_run_is_the_same_without_the_compiled_sharing(
    policy: str, compat: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = _scenario()
    spec = PolicySpec.parse(policy, None)
    fast = Simulator(sc, spec, compat=compat)
    res_fast = fast.run()
    monkeypatch.setattr(engine, "_share_jit", None)
    slow = Simulator(sc, spec, compat=compat)
    res_slow = slow.run()
    assert res_fast.metrics["migrations"] > 50
    res_fast.metrics.pop("wall_s"), res_slow.metrics.pop("wall_s")
    assert res_fast.metrics == res_slow.metrics
    assert (fast.host_of == slow.host_of).all() and (fast.key == slow.key).all()
    assert np.array_equal(res_fast.power_w, res_slow.power_w)
