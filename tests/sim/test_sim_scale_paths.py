"""Scale-run code paths: the compiled t=0 placement matches the numpy one; the underload limit;
the planner's shortcuts (vectorized shedding, identical empty hosts) change no decision."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poolvisor.bench.sim_scale import scale_scenario
from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing import consolidation, kernels
from poolvisor.policies.balancing.consolidation import PlanConfig, PoolView, _Planner
from poolvisor.policies.balancing.detection import Detector
from poolvisor.policies.balancing.power import HP_ML110_G4, PowerTable
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.scenario import Scenario

POWER = PowerTable.of(HP_ML110_G4)


def _scenario(vms: int = 600, hosts: int = 80, steps: int = 12, seed: int = 3) -> Scenario:
    rng = np.random.default_rng(seed)
    util = np.clip(rng.gamma(2.0, 12.0, size=(vms, 289)), 0, 100).round()
    sc = scale_scenario(util, hosts)
    return dataclasses.replace(sc, end_s=300.0 * steps + 0.1)


@pytest.mark.parametrize("policy", ["thr-mmt", "lr-mmt", "mad-mmt"])
@pytest.mark.parametrize("compat", [False, True])
def test_compiled_initial_placement_matches_numpy(
    policy: str, compat: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not kernels.available():
        pytest.skip("numba not installed (optional 'fast' extra): only the numpy path exists")
    sc = _scenario()
    jit = Simulator(sc, PolicySpec.parse(policy, None), compat=compat)
    jit.initial_placement()
    monkeypatch.setattr(kernels, "available", lambda: False)
    plain = Simulator(sc, PolicySpec.parse(policy, None), compat=compat)
    plain.initial_placement()
    assert (jit.host_of == plain.host_of).all() and (jit.key == plain.key).all()
    assert np.bincount(jit.host_of).max() > 1  # several VMs per host: the open-host list is exercised


def test_no_host_for_a_vm_names_it_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = _scenario(vms=50, hosts=1)  # 50 VMs cannot share one host's RAM and link
    for _ in range(2):
        with pytest.raises(InvalidInputError, match=r"VM \d+ fits on no host"):
            Simulator(sc, PolicySpec.parse("thr-mmt", None), compat=False).initial_placement()
        monkeypatch.setattr(kernels, "available", lambda: False)


def test_underload_limit_caps_the_tries() -> None:
    sc = _scenario()
    spec = PolicySpec.parse("thr-mmt", None)
    free = Simulator(sc, spec, compat=False).run()
    none = Simulator(sc, spec, compat=False, underload_limit=0).run()
    one = Simulator(sc, spec, compat=False, underload_limit=1).run()
    assert free.rules.get("underload", 0) > 0
    assert none.rules.get("underload", 0) == 0 and none.metrics["migrations"] < free.metrics["migrations"]
    assert 0 < one.rules.get("underload", 0) < free.rules["underload"]
    # one host emptied per epoch at most: never more underload migrations than a host's VM slots
    slots = int(np.floor(sc.host_bw / sc.vm_bw.max()).max())
    assert one.rules["underload"] <= 12 * slots
    with pytest.raises(InvalidInputError, match="underload limit"):
        Simulator(sc, spec, compat=True, underload_limit=5)
    with pytest.raises(InvalidInputError, match="underload limit"):
        Simulator(sc, spec, compat=False, underload_limit=-1)


@pytest.mark.parametrize("policy", ["thr-mmt", "lr-mu", "iqr-mmt"])
def test_shortcuts_change_no_decision(policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shedding a long host list in one vectorized pass and scanning one switched-off host per
    class of identical ones give exactly the one-by-one decisions (same migrations, same energy)."""
    sc = _scenario(vms=1500, hosts=400, steps=10)
    spec = PolicySpec.parse(policy, None)
    fast = Simulator(sc, spec, compat=False)
    res_fast = fast.run()
    monkeypatch.setattr(consolidation, "SHED_AT_ONCE_MIN_VMS", 10**9)
    monkeypatch.setattr(consolidation, "CLASSES_MIN_CANDIDATES", 10**9)
    slow = Simulator(sc, spec, compat=False)
    res_slow = slow.run()
    assert res_fast.metrics["migrations"] > 100  # both shortcuts had work to do
    res_fast.metrics.pop("wall_s"), res_slow.metrics.pop("wall_s")
    assert res_fast.metrics == res_slow.metrics
    assert (fast.host_of == slow.host_of).all()


@pytest.mark.parametrize("jit", [True, False])
def test_shed_count_is_the_first_prefix_that_relieves_the_host(jit: bool) -> None:
    """Against the definition: remove VMs one at a time, recompute, stop when not overloaded
    (compiled and numpy forms)."""
    if jit and not kernels.available():
        pytest.skip("numba not installed (optional 'fast' extra): only the numpy path exists")
    rng = np.random.default_rng(7)
    for kind, param in (("thr", 0.8), ("lr", 1.2)):
        for _ in range(20):
            n = int(rng.integers(2, 40))
            req = rng.uniform(10, 200, n)
            ram = rng.choice([613.0, 870.0, 1740.0], n)
            hist = rng.uniform(0, 1, (n, 30)) * rng.uniform(0.2, 1.0)
            view = PoolView(
                total=np.array([2000.0 * n / 10]), pe=np.array([1e9]), model=np.zeros(1, dtype=np.intp),
                htype=np.zeros(1, dtype=np.intp), measured_u=np.array([0.9]), alloc_sum=np.array([req.sum()]),
                avail=np.zeros(1), req_sum=np.array([req.sum()]), ram_free=np.array([1e9]),
                hist=np.zeros((1, 30)), hlen=np.array([30]), max_ram=np.array([ram.max()]),
                lists=[list(range(n))], req=req, mips=np.full(n, 1000.0), ram=ram,
                vm_hist=hist, vm_hlen=np.full(n, int(rng.integers(5, 31))),
                contrib=(hist * 1000.0 / (2000.0 * n / 10))[None],
            )  # fmt: skip
            p = _Planner(view, PlanConfig(power=POWER, detector=Detector(kind, param)))
            p.jit = jit
            queue = [int(x) for x in rng.permutation(n)]
            lst, k = list(range(n)), 0
            while lst:
                lst.remove(queue[k])
                k += 1
                p.stats_of(0, lst)
                if not p.overloaded_one(0):
                    break
            assert p.shed_count(0, np.arange(n), np.asarray(queue)) == k
