"""Soft affinity/anti-affinity on moves (policies/balancing/soft.py) and in the spread planner."""

from __future__ import annotations

import numpy as np

from poolvisor.domain.models import HostSpec
from poolvisor.policies.balancing.actions import MIGRATE
from poolvisor.policies.balancing.planner import SpreadPolicy, plan_balancing
from poolvisor.policies.balancing.soft import SOFT_AFFINITY, SOFT_ANTI_AFFINITY, soft_penalty
from poolvisor.policies.balancing.view import LIVE_CPU_SCALE, LIVE_POWER, BalancingView
from poolvisor.state.cluster import ClusterState


def _state(members: list[int], hosts: int = 3) -> ClusterState:
    """`hosts` hosts of 8 vCPUs; group g with one member on each host listed in `members`."""
    st = ClusterState(("vcpu", "memory_mib"))
    for i in range(hosts):
        st.add_host(HostSpec(f"h{i}", {"vcpu": 8, "memory_mib": 16384}))
    for h in members:
        st.allocate(h, st.resources.vector({"vcpu": 1, "memory_mib": 1024}), "demo/g")
    return st


def test_penalty_counts_pairs_broken_after_minus_before() -> None:
    st = _state([0, 1, 1])  # the mover on h0, two members on h1
    dst = np.arange(3)
    anti = soft_penalty(st, ("demo/g", SOFT_ANTI_AFFINITY), 0, dst)
    assert anti.tolist() == [0.0, 2.0, 0.0]  # joining the two on h1 breaks two pairs
    aff = soft_penalty(st, ("demo/g", SOFT_AFFINITY), 0, dst)
    assert aff.tolist() == [0.0, -2.0, 0.0]  # ...which affinity wants: it mends two
    assert soft_penalty(st, None, 0, dst).tolist() == [0.0, 0.0, 0.0]
    assert soft_penalty(st, ("demo/other", SOFT_AFFINITY), 0, dst).tolist() == [0.0, 0.0, 0.0]


def test_spread_prefers_a_destination_that_keeps_the_rule_and_explains_the_other() -> None:
    st = _state([], hosts=3)
    t = st.workloads
    for name, h, cpu, grp in (("a", 0, 1, "demo/g"), ("big0", 0, 3, None), ("big1", 0, 3, None),
                              ("b", 1, 1, "demo/g"), ("c", 2, 2, None)):
        d = st.resources.vector({"vcpu": cpu, "memory_mib": 1024 * cpu})
        r = t.add(name, h, d)
        if grp is not None:
            st.allocate(h, np.zeros_like(d), grp)  # the member counts (demand already accounted)
        t.set_window(np.array([r]), np.array([[1.0 if name != "b" else 0.1]]))
    view = BalancingView(st, LIVE_POWER, cpu_scale=LIVE_CPU_SCALE)
    plain = plan_balancing(view, SpreadPolicy(max_gap=0.2), power=False).of_kind(MIGRATE)
    assert plain[0].workload == 0 and plain[0].dst == 1  # blind to g: a goes where b is
    view.soft = {0: ("demo/g", SOFT_ANTI_AFFINITY), 3: ("demo/g", SOFT_ANTI_AFFINITY)}
    soft = plan_balancing(view, SpreadPolicy(max_gap=0.2), power=False).of_kind(MIGRATE)
    assert soft[0].workload == 0 and soft[0].dst == 2
    assert soft[0].explanation.figures["soft_penalty"] == 0.0
    assert any("h1" in x and "soft penalty 1" in x for x in soft[0].explanation.alternatives)
