"""One pool, two callers, one planner: the live consolidation plan (API -> services -> store ->
plan_balancing) and the PlanetLab simulator's planning step (Simulator -> plan_balancing) take the
same actions on the same pool.

The pool: hosts, workloads placed on chosen hosts and their recorded CPU utilization. The live
side reads it from the store through `POST /v1/pools/{name}/consolidation-plan`; the simulator
gets the same numbers as a Scenario (CPU in MIPS per vCPU, one PE per host, the live power curve)
starting from the same placement, and plans once, at its first epoch, on the newest sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from poolvisor.policies.balancing.view import LIVE_CPU_SCALE, LIVE_INTERVAL_S, LIVE_POWER
from poolvisor.services import Services
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.scenario import Scenario

T0 = 1_700_000_100.0  # a 5-minute bucket start; the next sample lands in the next bucket

# host: vCPU, memory (MiB)
HOSTS = [("eq-h0", 8.0, 16384.0), ("eq-h1", 8.0, 16384.0), ("eq-h2", 16.0, 32768.0), ("eq-h3", 8.0, 16384.0),
         ("eq-h4", 16.0, 32768.0)]
# workload: host, vCPU, memory, CPU utilization at T0 and T0 + 300 s (the newest decides)
WORKLOADS = [
    ("w0", 0, 4.0, 4096.0, 0.5, 0.95),  # eq-h0 overloaded: 0.95*4 + 0.9*3 + 0.8*1 > 0.8 * 8
    ("w1", 0, 3.0, 2048.0, 0.4, 0.9),
    ("w2", 0, 1.0, 1024.0, 0.3, 0.8),
    ("w3", 1, 2.0, 3072.0, 0.9, 0.1),  # eq-h1 nearly idle: an underload candidate
    ("w4", 2, 6.0, 8192.0, 0.2, 0.5),
    ("w5", 2, 4.0, 2048.0, 0.6, 0.6),
    ("w6", 3, 2.0, 1024.0, 0.1, 0.3),
    ("w7", 4, 8.0, 4096.0, 0.7, 0.7),
]


def _live_pool(client: Any, admin: dict[str, str]) -> None:
    def ok(r: Any) -> Any:
        assert r.status_code in (200, 201), r.text
        return r.json()

    ok(client.post("/v1/pools", json={"name": "eq"}, headers=admin))
    ok(client.post("/v1/projects", json={"name": "eq"}, headers=admin))
    for name, cpu, mem in HOSTS:
        ok(client.post("/v1/hosts", json={"name": name, "pool": "eq", "labels": {"slot": name},
                                          "capacity": {"vcpu": cpu, "memory_mib": mem}}, headers=admin))
    for name, h, cpu, mem, _u0, _u1 in WORKLOADS:
        out = ok(client.post("/v1/workloads", headers=admin, json={
            "name": name, "project": "eq", "pool": "eq", "demand": {"vcpu": cpu, "memory_mib": mem},
            "required_labels": {"slot": HOSTS[h][0]}}))
        assert out["host"] == HOSTS[h][0]
    samples = [{"workload": n, "project": "eq", "time": T0 + k * LIVE_INTERVAL_S, "cpu": u}
               for n, _h, _c, _m, *us in WORKLOADS for k, u in enumerate(us)]
    ok(client.post("/v1/utilization", json={"samples": samples}, headers=admin))


def _simulated(policy: str) -> tuple[list[tuple[str, str, str]], Simulator]:
    """The simulator on the same pool: migrations it starts at its first (only) epoch."""
    h, v = len(HOSTS), len(WORKLOADS)
    util = np.array([[u0, u1, u1] for *_x, u0, u1 in WORKLOADS])  # the engine reads one step past the end
    sc = Scenario(
        host_pes=np.ones(h), host_pe_mips=np.array([c for _n, c, _m in HOSTS]) * LIVE_CPU_SCALE,
        host_ram=np.array([m for _n, _c, m in HOSTS]), host_bw=np.full(h, 10e6),
        host_model=np.zeros(h, dtype=np.intp), power=LIVE_POWER,
        vm_mips=np.array([w[2] for w in WORKLOADS]) * LIVE_CPU_SCALE,
        vm_ram=np.array([w[3] for w in WORKLOADS]), vm_bw=np.ones(v), util=util,
        interval_s=LIVE_INTERVAL_S, start_s=0.0, end_s=LIVE_INTERVAL_S, name="eq")
    start = np.array([w[1] for w in WORKLOADS])

    class FromPlacement(Simulator):
        def initial_placement(self) -> None:
            self._append(np.arange(self.V), start)

    sim = FromPlacement(sc, PolicySpec.parse(policy, None), compat=False, record=True)
    sim.run()
    names = [w[0] for w in WORKLOADS]
    moves = [(f"eq/{names[vm]}", HOSTS[src][0], HOSTS[dst][0]) for _t, vm, src, dst in sim.trace_migrations]
    return moves, sim


@pytest.mark.parametrize("policy", ["thr-mmt", "thr-mu", "thr-mmt-0.9"])
def test_live_plan_and_simulator_take_the_same_actions(client: Any, admin: dict[str, str], svc: Services,
                                                       policy: str) -> None:
    _live_pool(client, admin)
    r = client.post("/v1/pools/eq/consolidation-plan", json={"policy": policy}, headers=admin)
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    live = [(a["workload"], a["from"], a["to"]) for a in plan["actions"] if a["kind"] == "migrate"]
    sim, _ = _simulated(policy)
    assert live == sim
    assert live, "the pool is built so that the policy moves something"
    assert [(m["workload"], m["from"], m["to"]) for m in plan["moves"]] == live
    for a in plan["actions"]:  # every action explains itself
        assert a["rule"]
        assert a["kind"] != "migrate" or {"src_util", "dst_util", "requested"} <= set(a["figures"])
    assert plan["policy"] == policy
    # eq-h0 runs at 0.9125 of its CPU: over both thresholds, relieved; idle hosts are emptied
    assert any(a["rule"] == "thr" and a["from"] == "eq-h0" for a in plan["actions"])
    assert any(a["rule"] == "underload" for a in plan["actions"])
    assert {a["from"] for a in plan["actions"] if a["kind"] == "power_off"} >= {"eq-h1", "eq-h3"}


@pytest.mark.parametrize("policy", ["adaptive", "adaptive-1.5"])
def test_the_simulators_default_policy_plans_the_live_pool(client: Any, admin: dict[str, str],
                                                           policy: str) -> None:
    """adaptive by name through the API: a plan of explained migrations. (Not compared with the
    simulator: the live window carries the first sample back over the whole window, see
    docs/balancing.md, Limits, so the LR forecast sees a longer history than the simulator's.)"""
    _live_pool(client, admin)
    r = client.post("/v1/pools/eq/consolidation-plan", json={"policy": policy}, headers=admin)
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert plan["policy"] == policy and plan["moves"]
    for a in plan["actions"]:
        assert a["rule"]
        assert a["kind"] != "migrate" or {"src_util", "dst_util", "requested"} <= set(a["figures"])


def test_the_default_policy_is_pack_and_unknown_ones_are_refused(client: Any, admin: dict[str, str]) -> None:
    _live_pool(client, admin)
    r = client.post("/v1/pools/eq/consolidation-plan", json={}, headers=admin)
    assert r.status_code == 200 and r.json()["plan"]["policy"] == "pack"
    for bad in ("best", "thr-xx", "thr-mmt-abc", "adaptive-0.5", "adaptive-mmt"):
        r = client.post("/v1/pools/eq/consolidation-plan", json={"policy": bad}, headers=admin)
        assert r.status_code == 422, r.text
        # the rule the pattern states, not the regular expression
        assert "unknown balancing policy" in r.json()["message"] and "^(" not in r.json()["message"], r.text
    r = client.post("/v1/pools/eq/consolidation-plan", json={"policy": "best", "apply": True}, headers=admin)
    assert r.status_code == 422, r.text
