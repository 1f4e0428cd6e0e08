"""Scale-run code paths: the compiled t=0 placement matches the numpy one; the underload limit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poolvisor.bench.sim_scale import scale_scenario
from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing import kernels
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.scenario import Scenario


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
