"""plan_balancing / plan_recovery on the one model (ClusterState + workload table)."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.models import HostSpec
from poolvisor.policies.balancing.actions import MIGRATE, POWER_OFF, POWER_ON, RESTART
from poolvisor.policies.balancing.adaptive import AdaptiveConfig, plan_adaptive
from poolvisor.policies.balancing.planner import (
    AdaptivePolicy,
    PabfdPolicy,
    PackPolicy,
    SpreadPolicy,
    plan_balancing,
    plan_recovery,
    policy_named,
)
from poolvisor.policies.balancing.view import LIVE_POWER, BalancingView, pool_view
from poolvisor.policies.packing.consolidate import plan_consolidation
from poolvisor.state.cluster import ClusterState


def pool(caps: list[float], placed: list[tuple[int, float, float]]) -> ClusterState:
    """Hosts with `caps` vCPU (2 GiB per vCPU); workloads (host, vCPU, utilization now)."""
    st = ClusterState(("vcpu", "memory_mib"))
    for i, c in enumerate(caps):
        st.add_host(HostSpec(f"h{i}", {"vcpu": c, "memory_mib": 2048 * c}))
    for k, (h, cpu, u) in enumerate(placed):
        r = st.workloads.add(f"w{k}", h, np.array([cpu, 1024 * cpu]))
        st.workloads.set_window(np.array([r]), np.array([[u]]))
    return st


def view(st: ClusterState) -> BalancingView:
    return BalancingView(st, LIVE_POWER)


def test_pack_is_the_packing_planner_plus_power_off():
    st = pool([8, 8, 8], [(0, 2, 0.5), (1, 2, 0.5), (2, 1, 0.5)])
    acts = plan_balancing(view(st), PackPolicy())
    plan = plan_consolidation(st, ["w0", "w1", "w2"], st.workloads.demand.T, [0, 1, 2])
    assert [(a.workload, a.src, a.dst, a.rule) for a in acts.of_kind(MIGRATE)] == \
        [(m.workload, m.src, m.dst, m.rule) for m in plan.moves]
    emptied = {a.src for a in acts.of_kind(POWER_OFF)}
    assert emptied and emptied == {a.src for a in acts.of_kind(MIGRATE)} and not acts.of_kind(POWER_ON)
    assert st.workloads.host.tolist() == [0, 1, 2]  # planning never mutates the model


def test_pabfd_relieves_an_overloaded_host_with_an_explanation():
    st = pool([4, 4, 4], [(0, 2, 0.9), (0, 2, 0.95), (1, 1, 0.5), (2, 1, 0.5)])
    acts = plan_balancing(view(st), policy_named("thr-mmt", power=LIVE_POWER))
    relief = [a for a in acts if a.rule == "thr"]
    assert relief and all(a.src == 0 and a.dst != 0 for a in relief)
    f = relief[0].explanation.figures
    assert f["src_util"] == pytest.approx((0.9 * 2 + 0.95 * 2) / 4)
    assert f["requested"] in (1.8, 1.9) and f["candidates"] >= 1


def test_pabfd_honours_the_migration_cap():
    st = pool([4, 4, 4, 4], [(0, 2, 0.9), (0, 2, 0.95), (1, 1, 0.2), (2, 1, 0.2), (3, 1, 0.2)])
    full = plan_balancing(view(st), policy_named("thr-mmt", power=LIVE_POWER)).of_kind(MIGRATE)
    assert len(full) >= 2
    capped = plan_balancing(view(st), policy_named("thr-mmt", power=LIVE_POWER, max_migrations=1))
    assert capped.of_kind(MIGRATE) == full[:1] and "beyond the cap of 1" in capped.notes[0]


def test_spread_narrows_the_gap_and_stops():
    st = pool([8, 8, 8], [(0, 2, 1.0), (0, 2, 1.0), (0, 2, 0.9), (1, 1, 0.1)])
    acts = plan_balancing(view(st), SpreadPolicy(max_gap=0.15))
    moves = acts.of_kind(MIGRATE)
    assert moves and all(a.src == 0 for a in moves) and moves[0].dst == 2  # the emptiest first
    load = np.bincount(st.workloads.host, np.array([2.0, 2.0, 1.8, 0.1]), 3)
    for a in moves:
        load[a.src] -= [2.0, 2.0, 1.8, 0.1][a.workload]
        load[a.dst] += [2.0, 2.0, 1.8, 0.1][a.workload]
    u = load / 8
    assert u.max() - u.mean() <= 0.15 + 1e-12
    assert POWER_ON in {a.kind for a in acts}  # h2 was empty
    capped = plan_balancing(view(st), SpreadPolicy(max_gap=0.15, max_migrations=1))
    assert len(capped.of_kind(MIGRATE)) == 1


@pytest.mark.parametrize("policy", [PackPolicy(), policy_named("thr-mmt", power=LIVE_POWER)])
def test_recovery_restarts_every_victim_on_a_survivor(policy: PackPolicy | PabfdPolicy):
    st = pool([8, 8, 8, 2], [(0, 3, 0.5), (0, 2, 0.5), (1, 2, 0.5), (1, 1, 0.2)])
    acts = plan_recovery(view(st), [0], policy)
    restarts = acts.of_kind(RESTART)
    assert sorted(a.workload for a in restarts) == [0, 1]
    assert all(a.src == 0 and a.dst in (1, 2, 3) for a in restarts)
    used = {a.dst for a in restarts}
    assert {a.dst for a in acts.of_kind(POWER_ON)} == used - {1}
    assert acts[: len(acts.of_kind(POWER_ON))] == acts.of_kind(POWER_ON)  # switched on first
    free = st.capacity - st.allocated
    for a in restarts:
        free[:, a.dst] -= st.workloads.demand[:, a.workload]
    assert (free >= -1e-9).all()


def test_recovery_says_when_nothing_can_take_a_workload():
    st = pool([8, 1], [(0, 4, 0.5)])
    acts = plan_recovery(view(st), [0], PackPolicy())
    assert [(a.kind, a.dst) for a in acts] == [(RESTART, -1)] and "no surviving host" in acts[0].rule


def test_default_share_scales_down_an_oversubscribed_host():
    st = ClusterState(("vcpu", "memory_mib"))
    st.add_host(HostSpec("h0", {"vcpu": 4, "memory_mib": 8192}, {"vcpu": 2.0}))  # 4 cores, 8 vCPU to sell
    for k, u in enumerate((1.0, 0.5)):  # requests 6 vCPU on 4 cores
        st.workloads.add(f"w{k}", 0, np.array([4.0, 1024.0]))
        st.workloads.set_window(np.array([k]), np.array([[u]]))
    pv = pool_view(BalancingView(st, LIVE_POWER), False)
    assert pv.req.tolist() == [4.0, 2.0] and pv.avail.tolist() == [0.0]
    assert pv.alloc_sum[0] == np.floor(4 * 4 / 6) + np.floor(2 * 4 / 6)


@pytest.mark.parametrize("name", ["", "best", "thr", "thr-mmt-x", "foo-mmt", "thr-abc"])
def test_unknown_policy_names_are_refused(name: str):
    with pytest.raises(InvalidInputError):
        policy_named(name, power=LIVE_POWER)


def test_every_name_the_api_accepts_is_a_policy():
    """The API's pattern and policy_named agree (a schema-valid name is never refused)."""
    import re

    from poolvisor.api.schemas import BALANCING_POLICY_PATTERN

    for name in ("pack", "spread", "thr-mmt", "lrr-rs", "mad-mc-2.5", "iqr-mu-000001.123456", "lr-mmt-1",
                 "adaptive", "adaptive-1.2", "adaptive-1", "adaptive-001.5"):
        assert re.match(BALANCING_POLICY_PATTERN, name)
        policy_named(name, power=LIVE_POWER)
    for name in ("thr", "thr-mmt-", "thr-mmt-1e3", "THR-MMT", "pack ", "thr-mmt--1", "adaptive-0.5",
                 "adaptive-", "adaptive-lr", "adaptive-mmt-1.2", "adaptive-0"):
        assert not re.match(BALANCING_POLICY_PATTERN, name)


def test_adaptive_is_a_named_policy_of_the_planner():
    """plan_balancing with the adaptive policy is plan_adaptive on the view's columns (what the
    simulator's default runs), and its band keeps a host the LR-1.2 check would relieve."""
    st = pool([8, 8, 8], [(0, 4, 1.0), (0, 2.4, 1.0), (1, 1, 0.5)])  # host 0 at 0.8, one sample
    lr = plan_balancing(view(st), policy_named("lr-mmt-1.2", power=LIVE_POWER), power=False)
    assert [(a.src, a.rule) for a in lr][:1] == [(0, "fallback-thr")]  # 0.8 > the 0.7 fallback
    adaptive = policy_named("adaptive", power=LIVE_POWER)
    assert isinstance(adaptive, AdaptivePolicy) and adaptive.config.detector.param == 1.2
    acts = plan_balancing(view(st), adaptive, power=False)
    expect = plan_adaptive(pool_view(view(st), True), adaptive.config, AdaptiveConfig())
    assert list(acts) == expect
    assert all(a.src != 0 for a in acts)  # 0.8 is inside the band (the trigger's fallback is 0.84)
    assert policy_named("adaptive-1.5", power=LIVE_POWER).config.detector.param == 1.5  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["adaptive-0.5", "adaptive-x", "adaptive-mmt-1.2", "adaptive-1.2-3"])
def test_bad_adaptive_names_are_refused(name: str):
    with pytest.raises(InvalidInputError):
        policy_named(name, power=LIVE_POWER)
