"""Pool packing on hosts of very different sizes: every host keeps to its own capacity.

The packer once scaled every host by the largest one, so its slack (1e-9 of the largest host) let
small hosts be overfilled, and the feasibility check then raised (a 500 through the API). The
property tests throw random heterogeneous pools (capacities 1..1e12, partly filled, overcommitted,
some hosts down) and random batches at both planners: they must never raise, and replaying each
plan with ClusterState.allocate (the same check as the ledger's claims) must never overflow a host.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poolvisor.domain.models import HostSpec, HostState
from poolvisor.policies.packing.consolidate import _settle, plan_batch_placement, plan_consolidation
from poolvisor.state.cluster import ClusterState

RES = ["vcpu", "memory_mib"]

amounts = st.one_of(
    st.sampled_from([1.0, 2.0, 64.0, 1e8, 1e12, 0.0]),
    st.floats(0, 12).map(lambda e: float(10**e)),  # log-uniform over 1..1e12
    st.floats(1, 1e12),
)
hosts_ = st.lists(st.tuples(amounts, amounts, st.sampled_from([1.0, 1.0, 2.0, 1.5]),
                            st.floats(0, 1), st.sampled_from([HostState.UP] * 4 + [HostState.MAINTENANCE])),
                  min_size=1, max_size=9)
demand = st.one_of(
    st.sampled_from([(1.0, 512.0), (0.5, 1.0), (1.0, 1.0), (64.0, 64.0), (0.0, 1.0)]),
    st.tuples(st.floats(0, 6).map(lambda e: float(10**e)), st.floats(0, 6).map(lambda e: float(10**e))),
    st.tuples(st.floats(0, 1e12), st.floats(0, 1e12)),
)


Hosts = list[tuple[float, float, float, float, HostState]]


def _pool(hosts: Hosts) -> tuple[ClusterState, list[int], np.ndarray]:
    """A pool whose hosts are filled to the drawn fraction by one workload each (when it fits)."""
    s = ClusterState(RES)
    cur, dem = [], []
    for i, (cpu, mem, oc, fill, state) in enumerate(hosts):
        if cpu == 0 and mem == 0:
            cpu = 1.0
        s.add_host(HostSpec(f"h{i}", {"vcpu": cpu, "memory_mib": mem}, overcommit={"vcpu": oc}))
        d = s.capacity[:, i] * fill
        if fill > 0 and np.any(d > 0):
            s.allocate(i, d)
            cur.append(i)
            dem.append(d)
        if state is not HostState.UP:
            s.set_state(f"h{i}", state)
    return s, cur, np.array(dem).reshape(len(dem), len(RES))


def _replay(s: ClusterState, target: np.ndarray, demands: np.ndarray,
            source: np.ndarray | None = None) -> None:
    """Apply a plan to a copy the way the services do: raises ConflictError if any host overflows."""
    c = s.copy()
    moved = (target >= 0) if source is None else (target != source)
    if source is not None:
        for i in np.flatnonzero(moved):
            c.release(int(source[i]), demands[i])
    for i in np.flatnonzero(moved):
        h = int(target[i])
        assert s.up[h], f"planned onto host {s.names[h]} which is not up"
        c.allocate(h, demands[i])


@settings(max_examples=300, deadline=None)
@given(hosts=hosts_, batch=st.lists(demand, min_size=1, max_size=80))
def test_batch_plans_respect_every_host(hosts: Hosts, batch: list[tuple[float, float]]) -> None:
    s, _cur, _dem = _pool(hosts)
    d = np.array(batch, dtype=np.float64)
    gen = s.generation
    plan = plan_batch_placement(s, [f"w{i}" for i in range(len(batch))], d)
    assert s.generation == gen
    _replay(s, plan.assignment, d)
    for i, m in enumerate(plan.moves):
        assert (m.dst < 0) == (plan.assignment[i] < 0)


@settings(max_examples=200, deadline=None)
@given(hosts=hosts_, extra=st.lists(st.tuples(st.integers(0, 8), st.floats(0, 1)), max_size=20),
       budget=st.none() | st.integers(0, 10))
def test_consolidation_plans_respect_every_host(hosts: Hosts, extra: list[tuple[int, float]],
                                                budget: int | None) -> None:
    s, cur, dem = _pool(hosts)
    cur, rows = list(cur), list(dem)
    for h, frac in extra:  # more, smaller workloads where they still fit
        if h < s.n:
            d = s.free[:, h] * frac
            # (free x frac can round above the free room on huge hosts: only what allocate accepts)
            if np.any(d > 0) and np.all(d >= 0) and np.all(s.allocated[:, h] + d <= s.capacity[:, h] + 1e-9):
                s.allocate(h, d)
                cur.append(h)
                rows.append(d)
    d = np.array(rows).reshape(len(rows), len(RES))
    plan = plan_consolidation(s, [f"w{i}" for i in range(len(cur))], d, cur, max_migrations=budget)
    _replay(s, plan.assignment, d, np.array(cur, dtype=np.int64))
    assert plan.hosts_after <= plan.hosts_before


def test_one_huge_host_does_not_let_small_ones_overfill() -> None:
    # the shape: demo-sized hosts (64 vCPU after overcommit) next to one of 1e8 vCPU
    s = ClusterState(RES)
    for i in range(6):
        s.add_host(HostSpec(f"demo-{i}", {"vcpu": 32, "memory_mib": 131072}, overcommit={"vcpu": 2}))
        s.allocate(i, np.array([0.35 * (i + 1), 1000.0]))  # fractional leftovers
    s.add_host(HostSpec("big", {"vcpu": 1e8, "memory_mib": 1e4}))
    d = np.tile([1.0, 512.0], (400, 1))
    plan = plan_batch_placement(s, [f"t{i}" for i in range(400)], d)
    _replay(s, plan.assignment, d)
    per_host = np.bincount(plan.assignment[plan.assignment >= 0], minlength=s.n)
    assert per_host[:6].sum() > 0 and all(per_host[i] <= np.floor(s.free[0, i]) for i in range(6))


def test_settle_rehomes_a_claim_that_would_fail() -> None:
    # the last guard: a plan whose in-order claims would overflow a host (float sums beyond the
    # packer's margin) is settled before it is returned: the workload moves to the next host, or
    # stays unplaced when none can take it
    s = ClusterState(RES)
    for i in range(3):
        s.add_host(HostSpec(f"h{i}", {"vcpu": 4, "memory_mib": 4}))
    d = np.array([[3.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    out = _settle(s, d, np.array([0, 0, 1]), prefer=np.array([0, 1, 2]))
    assert out.tolist() == [0, 1, 2]  # w1 does not fit h0 after w0: first preferred host with room
    out = _settle(s, d, np.array([0, 0, 0]), prefer=np.array([0]))
    assert out.tolist() == [0, -1, -1]
    assert _settle(s, d, np.array([0, 1, 2]), prefer=np.array([0, 1, 2])).tolist() == [0, 1, 2]


# a host where `free` says a workload fits exactly, yet allocated + demand rounds above capacity
CAP, ALLOC = 62845088.65486757, 26563815.889446463
EXACT = CAP - ALLOC
assert ALLOC + EXACT > CAP + 1e-9


def test_a_claim_that_rounds_over_capacity_is_rehomed_or_left_out() -> None:
    s = ClusterState(["vcpu"])
    s.add_host(HostSpec("odd", {"vcpu": CAP}))
    s.allocate(0, np.array([ALLOC]))
    d = np.array([[EXACT]])
    plan = plan_batch_placement(s, ["w"], d)
    assert plan.assignment.tolist() == [-1] and plan.unplaced == ["w"]
    s.add_host(HostSpec("roomy", {"vcpu": 2 * CAP}))
    plan = plan_batch_placement(s, ["w"], d)
    assert plan.assignment.tolist() == [1]
    _replay(s, plan.assignment, d)


def test_a_consolidation_move_that_rounds_over_capacity_stays() -> None:
    s = ClusterState(["vcpu"])
    for i in range(2):
        s.add_host(HostSpec(f"h{i}", {"vcpu": CAP}))
    s.allocate(0, np.array([ALLOC]))
    s.allocate(1, np.array([EXACT]))
    d, cur = np.array([[ALLOC], [EXACT]]), np.array([0, 1])
    plan = plan_consolidation(s, ["a", "b"], d, cur)
    _replay(s, plan.assignment, d, cur)
    assert plan.moves == [] and plan.hosts_after == 2 and any("kept" in n for n in plan.notes)
