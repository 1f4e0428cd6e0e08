"""Shares decide who gets what under contention, by one policy core (policies/shares.grant) for
the sim driver (a guest's `granted` in its stats) and the PlanetLab simulator's shares mode."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from poolvisor.bench.sim_scale import scale_scenario
from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies import shares as share_policy
from poolvisor.services import Services
from poolvisor.sim.engine import PolicySpec, Sharing, Simulator, allocate


def _contended(s: Services) -> dict[str, dict[str, float]]:
    """Two guests of 4 vCPU limit reserving 1 on a 4-vCPU host (policy min), shares 3:1, both busy."""
    s.catalog.create_pool("p")
    s.hosts.create_host("h0", {"vcpu": 4, "memory_mib": 8192}, pool="p")
    s.shares.set_allocation_policy("p", "min")
    for name, sh in (("big", 3000), ("small", 1000)):
        s.workloads.create_workload("a", name, demand={"vcpu": 4, "memory_mib": 1024}, pool="p",
                                    reservation={"vcpu": 1}, shares={"vcpu": sh}, create_project=True)
    got = s.drivers.workload_stats("h0").workload_stats("h0")
    return {k: v.granted for k, v in got.items()}


def test_the_sim_driver_grants_by_reservation_and_shares(lite: Services) -> None:
    g = _contended(lite)  # each asks for 4 vCPU of 4: 1 reserved each, the other 2 split 3:1
    assert g["a/big"]["vcpu"] == pytest.approx(3.0) and g["a/small"]["vcpu"] == pytest.approx(1.0)
    assert g["a/big"]["memory_mib"] == 1024  # memory is not short: each gets its limit
    lite.workloads.delete_workload("a", "big")
    alone = lite.drivers.workload_stats("h0").workload_stats("h0")["a/small"].granted
    assert alone["vcpu"] == pytest.approx(4.0)  # no contention: its whole demand, up to its limit


def _scenario(vms: int = 600, hosts: int = 60, steps: int = 12) -> Any:
    rng = np.random.default_rng(4)
    util = np.clip(rng.gamma(2.0, 14.0, size=(vms, 289)), 0, 100).round()
    return dataclasses.replace(scale_scenario(util, hosts), end_s=300.0 * steps + 0.1)


def test_an_overloaded_host_honours_reservations_then_shares() -> None:
    """One host of 3000 MIPS, three resident VMs asking 2000 each (sizes 2500, 1000, 500 MIPS,
    reserving 40 %): CloudSim scales all alike (1000 each); the shares mode gives each its
    reservation, then splits the rest by shares (their sizes)."""
    req, mips = np.array([2000.0, 2000.0, 2000.0]), np.array([2500.0, 1000.0, 500.0])
    args = (req, np.zeros(3, dtype=np.int64), np.arange(3, dtype=np.int64), np.zeros(3, dtype=bool),
            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
            np.array([2500.0]), np.array([3000.0]))
    assert allocate(*args).vm_alloc.tolist() == [1000.0, 1000.0, 1000.0]
    got = allocate(*args, sharing=Sharing.by_size(mips, 0.4)).vm_alloc
    # shares 5:2:1 split 3000 into 1875, 750, 375: each above its reservation (1000, 400, 200)
    assert got == pytest.approx([1875.0, 750.0, 375.0])
    # a bigger reservation for the small VM: it keeps 1000; the rest is split 5:2 by the others
    res = Sharing(np.array([0.0, 0.0, 1000.0]), mips)
    assert allocate(*args, sharing=res).vm_alloc == pytest.approx([2000 * 5 / 7, 2000 * 2 / 7, 1000.0])
    assert got.sum() == pytest.approx(3000.0)


def test_planetlab_shares_mode_runs_a_day() -> None:
    sc = _scenario()
    spec = PolicySpec.parse("thr-mmt", 1.0)
    base = Simulator(sc, spec, compat=False).run().metrics
    shared = Simulator(sc, spec, compat=False, sharing=Sharing.by_size(sc.vm_mips, 0.3)).run().metrics
    assert base["sla_overall"] > 0  # hosts are short at times (threshold 100 %): the sharing rule matters
    assert shared["sla_overall"] != base["sla_overall"]
    with pytest.raises(InvalidInputError):
        Simulator(sc, spec, compat=True, sharing=Sharing.by_size(sc.vm_mips, 0.3))
    with pytest.raises(InvalidInputError):
        Sharing.by_size(sc.vm_mips, 1.5)


def test_one_policy_core_for_the_sim_driver_and_the_simulator(lite: Services,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = share_policy.grant

    def spy(*args: object, **kw: object) -> np.ndarray:
        import inspect
        calls.append(inspect.stack()[1].frame.f_globals["__name__"])
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(share_policy, "grant", spy)
    _contended(lite)
    sc = _scenario(steps=6)
    Simulator(sc, PolicySpec.parse("thr-mmt", 1.0), compat=False,
              sharing=Sharing.by_size(sc.vm_mips, 0.2)).run()
    assert {"poolvisor.drivers.sim", "poolvisor.sim.engine"} <= set(calls)
