"""Batch placement and consolidation plans on a ClusterState: feasible, pure, explained."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.models import HostSpec, HostState
from poolvisor.policies.packing.consolidate import plan_batch_placement, plan_consolidation
from poolvisor.state.cluster import ClusterState


def pool(n: int, cpu: float = 16, mem: float = 64) -> ClusterState:
    st = ClusterState(["vcpu", "memory_mib"])
    for i in range(n):
        st.add_host(HostSpec(f"h{i}", {"vcpu": cpu, "memory_mib": mem}))
    return st


def apply(st: ClusterState, host_idx: np.ndarray, demands: np.ndarray) -> None:
    for h, d in zip(host_idx, demands, strict=True):
        if h >= 0:
            st.allocate(int(h), d)  # raises ConflictError if the plan overflowed a host


def test_batch_prefers_active_hosts_and_is_feasible() -> None:
    st = pool(6)
    st.allocate(0, np.array([8.0, 32.0]))
    st.allocate(1, np.array([4.0, 8.0]))
    gen = st.generation
    rng = np.random.default_rng(0)
    demands = np.column_stack([rng.integers(1, 6, 12), rng.integers(2, 20, 12)]).astype(float)
    names = [f"w{i}" for i in range(12)]
    plan = plan_batch_placement(st, names, demands)
    assert st.generation == gen  # pure: the state is untouched
    assert plan.unplaced == []
    used = set(plan.assignment.tolist())
    assert {0, 1} <= used or st.free[:, 0].min() < demands.min()
    total = demands.sum(axis=0) + st.allocated.sum(axis=1)
    assert plan.hosts_after >= int(np.ceil(max(total / np.array([16.0, 64.0]))))
    assert plan.hosts_after <= plan.lower_bound + 2 + plan.hosts_before
    assert all(m.rule for m in plan.moves)
    assert "placed 12/12" in plan.summary
    apply(st, plan.assignment, demands)


def test_batch_respects_free_capacity_and_host_state() -> None:
    st = pool(3, cpu=8, mem=8)
    st.allocate(0, np.array([7.0, 7.0]))
    st.set_state("h2", HostState.MAINTENANCE)
    demands = np.array([[2.0, 2.0]] * 5)
    plan = plan_batch_placement(st, [f"w{i}" for i in range(5)], demands)
    placed = plan.assignment[plan.assignment >= 0]
    assert set(placed.tolist()) == {1}  # h0 is nearly full, h2 in maintenance
    assert len(plan.unplaced) == 1 and "free capacity" in plan.moves[-1].rule or len(plan.unplaced) == 1
    apply(st, plan.assignment, demands)


def test_batch_rejects_bad_input() -> None:
    st = pool(2)
    with pytest.raises(InvalidInputError):
        plan_batch_placement(st, ["a", "a"], np.ones((2, 2)))
    with pytest.raises(InvalidInputError):
        plan_batch_placement(st, ["a"], np.array([[-1.0, 1.0]]))


def scattered() -> tuple[ClusterState, list[str], np.ndarray, list[int]]:
    st = pool(6)
    cur = [0, 1, 2, 3, 4, 5, 0, 1]
    dem = np.array([[4, 10], [4, 10], [4, 10], [2, 5], [2, 5], [8, 40], [2, 2], [1, 1]], dtype=float)
    for h, d in zip(cur, dem, strict=True):
        st.allocate(h, d)
    return st, [f"w{i}" for i in range(8)], dem, cur


def test_consolidation_reaches_fewer_hosts_feasibly() -> None:
    st, names, dem, cur = scattered()
    gen = st.generation
    plan = plan_consolidation(st, names, dem, cur)
    assert st.generation == gen
    assert plan.hosts_before == 6
    assert plan.lower_bound == 2  # 27 vcpu over 16 per host
    assert plan.hosts_after == 2
    assert len({m.workload for m in plan.moves}) == len(plan.moves)  # each workload moves once
    # replay the plan from scratch on a fresh pool: no host overflows
    fresh = pool(6)
    apply(fresh, plan.assignment, dem)
    assert int(np.count_nonzero(fresh.workload_count)) == 2
    for m in plan.moves:
        assert m.src != m.dst and "empties" in m.rule


def test_consolidation_keeps_workloads_when_migration_is_expensive() -> None:
    st, names, dem, cur = scattered()
    plan = plan_consolidation(st, names, dem, cur, migration_cost=2.0)
    assert plan.moves == [] and plan.hosts_after == 6
    assert all("costs" in n for n in plan.notes)
    # a budget of 2 migrations empties at most 2 single-workload hosts
    plan = plan_consolidation(st, names, dem, cur, max_migrations=2)
    assert len(plan.moves) <= 2 and plan.hosts_after == 6 - len(plan.moves)


def test_consolidation_never_moves_workloads_of_hosts_that_stay() -> None:
    st, names, dem, cur = scattered()
    plan = plan_consolidation(st, names, dem, cur)
    stay = set(plan.assignment.tolist())
    for i, h in enumerate(cur):
        if h in stay:
            assert plan.assignment[i] == h


@pytest.mark.parametrize("seed", range(6))
def test_random_pools_give_feasible_plans(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st = ClusterState(["vcpu", "memory_mib"])
    for i in range(12):
        big = rng.random() < 0.5
        st.add_host(HostSpec(f"h{i}", {"vcpu": 32 if big else 16, "memory_mib": 128 if big else 64}))
    cur = rng.integers(0, 12, 20)
    dem = np.column_stack([rng.integers(1, 6, 20), rng.integers(1, 20, 20)]).astype(float)
    keep = []
    for i, (h, d) in enumerate(zip(cur, dem, strict=True)):
        if np.all(st.free[:, h] >= d):
            st.allocate(int(h), d)
            keep.append(i)
    names = [f"w{i}" for i in keep]
    plan = plan_consolidation(st, names, dem[keep], cur[keep])
    fresh = ClusterState(["vcpu", "memory_mib"])
    for i in range(12):
        cap = {"vcpu": float(st.capacity[0, i]), "memory_mib": float(st.capacity[1, i])}
        fresh.add_host(HostSpec(f"h{i}", cap))
    apply(fresh, plan.assignment, dem[keep])
    assert int(np.count_nonzero(fresh.workload_count)) == plan.hosts_after <= plan.hosts_before
    batch = np.column_stack([rng.integers(1, 8, 15), rng.integers(1, 30, 15)]).astype(float)
    bp = plan_batch_placement(st, [f"b{i}" for i in range(15)], batch)
    apply(st, bp.assignment, batch)  # raises if any host would overflow
    assert bp.hosts_after >= bp.hosts_before
