"""The live controller (services/controller.py, controller_loop.py) on the sim driver and a
simulated clock: it measures, balances, consolidates, powers hosts off and on, within the limits
and the placement constraints, explains every action, and obeys pause/resume and the leader hook."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from poolvisor.clock import SimClock
from poolvisor.drivers.base import DriverWorkload
from poolvisor.drivers.sim import SimDriver
from poolvisor.policies.balancing.limits import Limits
from poolvisor.services import Services, open_services
from poolvisor.services.controller import ControllerConfig
from poolvisor.services.controller_loop import ControllerLoop

T0 = 1_800_000_000.0  # epoch seconds (samples must be real times)
INTERVAL = 30.0


@pytest.fixture
def svc(tmp_path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'ctl.db'}")
    yield s
    s.close()


def _pool(s: Services, hosts: int, vcpu: float = 16, memory: float = 65536, labels: bool = False,
          overcommit: float = 1.0) -> None:
    s.catalog.create_pool("p")
    for i in range(hosts):
        s.hosts.create_host(f"h{i}", {"vcpu": vcpu, "memory_mib": memory}, pool="p",
                            labels={"rack": f"r{i}"} if labels else None, domain=f"r{i}",
                            overcommit={"vcpu": overcommit})
    s.catalog.create_project("demo")


def _vm(s: Services, name: str, vcpu: float = 2, mem: float = 2048, **kw) -> str:
    w = s.workloads.create_workload("demo", name, demand={"vcpu": vcpu, "memory_mib": mem}, pool="p", **kw)
    assert w.host is not None
    return w.host


def _util(s: Services, name: str, host: str, u: float) -> None:
    d = s.drivers.driver_of(host)
    assert isinstance(d, SimDriver)
    d.set_utilization(host, DriverWorkload(f"demo/{name}", "vm", {}), u)


def _run_tasks(s: Services) -> int:
    n = 0
    for tid in s.tasks.claim_tasks(100):
        t = s.tasks.run_task(tid)
        assert t is not None and t.state == "succeeded", t
        n += 1
    return n


def _loop(s: Services, clock: SimClock, **kw) -> ControllerLoop:
    loop = ControllerLoop(s, INTERVAL, clock=clock, **kw)
    loop.start()
    return loop


def _rounds(s: Services, clock: SimClock, loop: ControllerLoop, n: int) -> None:
    for _ in range(n):
        clock.run(until=clock.now + INTERVAL)
        _run_tasks(s)


def _hosts(s: Services) -> dict[str, tuple[str, int]]:
    return {h.name: (h.state, h.workloads) for h in s.hosts.list_hosts()}


def test_the_loop_measures_balances_and_explains_on_a_simulated_clock(svc: Services) -> None:
    _pool(svc, 3)
    svc.controller.config = ControllerConfig(power=False, limits=Limits(per_host=2, per_pool=2))
    names = [f"vm{i}" for i in range(6)]
    for n in names:
        assert _vm(svc, n) == "h0"  # best fit packs them all on one host
    for n in names:
        _util(svc, n, "h0", 0.9)
    clock = SimClock(T0)
    loop = _loop(svc, clock)
    _rounds(svc, clock, loop, 1)
    assert loop.rounds == 1
    # measured: one sample per running workload, recorded as utilization history
    assert svc.utilization.recorded([f"demo/{n}" for n in names]) == [True] * 6
    first = svc.controller.status().last_round
    assert first is not None and first["samples"] == 6 and len(first["migrations"]) == 2  # the pool's 2 slots
    _rounds(svc, clock, loop, 6)
    counts = sorted(w for _, w in _hosts(svc).values())
    assert counts == [2, 2, 2]  # balanced
    last = svc.controller.status().last_round
    assert last is not None and last["imbalance"]["p"] < first["imbalance"]["p"]
    moves = svc.events.list_events(limit=100, where=None)
    moves = [e for e in moves if e.kind == "controller.migrate"]
    assert len(moves) == 4
    for e in moves:  # every action carries its explanation
        assert {"rule", "figures", "alternatives", "from", "to", "task"} <= set(e.data)
        assert e.data["figures"]["imbalance_gain"] > 0
    # a balanced pool stays put: no more moves
    _rounds(svc, clock, loop, 3)
    assert len([e for e in svc.events.list_events(limit=100) if e.kind == "controller.migrate"]) == 4


def test_pause_is_shared_by_every_replica_and_resume_acts(svc: Services, tmp_path) -> None:
    _pool(svc, 2)
    svc.controller.config = ControllerConfig(power=False)
    for i in range(4):
        _vm(svc, f"vm{i}")
        _util(svc, f"vm{i}", "h0", 1.0)
    other = open_services(f"sqlite:///{tmp_path / 'ctl.db'}")  # another server on the same database
    try:
        other.controller.pause("test")
        assert svc.controller.status().paused and svc.controller.status().changed_by == "test"
        clock = SimClock(T0)
        loop = _loop(svc, clock)
        _rounds(svc, clock, loop, 3)
        assert loop.rounds == 0 and loop.skipped["paused"] == 3
        assert _hosts(svc)["h0"][1] == 4  # nothing moved
        other.controller.resume("test")
        _rounds(svc, clock, loop, 2)
        assert loop.rounds == 2
        assert _hosts(svc)["h1"][1] > 0
        kinds = [e.kind for e in svc.events.list_events(limit=100)]
        assert "controller.paused" in kinds and "controller.resumed" in kinds
    finally:
        other.close()


def test_only_the_leader_reconciles(svc: Services) -> None:
    _pool(svc, 2)
    _vm(svc, "vm0")
    leader = {"me": False}
    clock = SimClock(T0)
    loop = _loop(svc, clock, is_leader=lambda: leader["me"])
    _rounds(svc, clock, loop, 2)
    assert loop.rounds == 0 and loop.skipped["not leader"] == 2
    assert svc.controller.status().last_round is None
    leader["me"] = True
    _rounds(svc, clock, loop, 1)
    assert loop.rounds == 1


def test_limits_hold_in_flight_migrations_and_cooldown(svc: Services) -> None:
    _pool(svc, 3)
    one = Limits(per_host=1, per_pool=1, cooldown_s=600)
    svc.controller.config = ControllerConfig(power=False, limits=one)
    for i in range(6):
        _vm(svc, f"vm{i}")
        _util(svc, f"vm{i}", "h0", 0.9)
    rep = svc.controller.reconcile(T0)
    assert len(rep.migrations) == 1
    # the migration is still queued: it holds the pool's only slot
    rep = svc.controller.reconcile(T0 + INTERVAL)
    assert rep.migrations == [] and any(h["reason"] == "pool migration slots full" for h in rep.held)
    _run_tasks(svc)
    moved = svc.controller.reconcile(T0 + 2 * INTERVAL).migrations
    assert len(moved) == 1
    _run_tasks(svc)
    # every migration the controller started respected the slot limit: one at a time
    tasks = [t for t in svc.tasks.list_tasks() if t.kind == "migrate"]
    assert len(tasks) == 2 and all(t.state == "succeeded" for t in tasks)


def test_no_ping_pong_within_the_cooldown(svc: Services) -> None:
    _pool(svc, 2)
    svc.controller.config = ControllerConfig(power=False, limits=Limits(cooldown_s=3600))
    for i in range(4):
        _vm(svc, f"vm{i}", vcpu=4)
        _util(svc, f"vm{i}", "h0", 0.8)
    rep = svc.controller.reconcile(T0)
    _run_tasks(svc)
    gone = {m["workload"] for m in rep.migrations}
    assert gone
    # the load flips: what moved to h1 is now busy there and h0 idles; the movers must stay
    for w in svc.workloads.list_workloads("demo"):
        assert w.host is not None
        _util(svc, w.name, w.host, 1.0 if w.host == "h1" else 0.0)
    held: dict[str, str] = {}
    for k in range(1, 4):
        rep = svc.controller.reconcile(T0 + k * INTERVAL)
        _run_tasks(svc)
        assert not gone & {m["workload"] for m in rep.migrations}
        held.update({h["workload"]: h["reason"] for h in rep.held})
    assert {held.get(g) for g in gone} & {"cool-down", "ping-pong"}  # proposed, and held back
    # past the cool-down they may move again
    rep = svc.controller.reconcile(T0 + 3600 + 4 * INTERVAL)
    assert gone & {m["workload"] for m in rep.migrations}


def test_anti_affinity_holds_for_controller_moves(svc: Services) -> None:
    _pool(svc, 2)
    svc.controller.config = ControllerConfig(power=False)
    # a and b may never share a host; a sits on busy h0, b alone on h1
    assert _vm(svc, "a", vcpu=1, mem=1024, group="g", group_policy="anti-affinity") == "h0"
    assert _vm(svc, "b", vcpu=1, mem=1024, group="g") == "h1"
    for i in range(3):
        assert _vm(svc, f"big{i}", vcpu=4, mem=4096) == "h0"
        _util(svc, f"big{i}", "h0", 1.0)
    _util(svc, "a", "h0", 1.0)
    for k in range(4):
        rep = svc.controller.reconcile(T0 + k * INTERVAL)
        _run_tasks(svc)
        assert "demo/a" not in {m["workload"] for m in rep.migrations}
    hosts = {w.name: w.host for w in svc.workloads.list_workloads("demo")}
    assert hosts["a"] != hosts["b"]
    assert hosts["a"] == "h0" and any(hosts[f"big{i}"] == "h1" for i in range(3))  # it balanced with others


def test_labels_hold_for_controller_moves(svc: Services) -> None:
    _pool(svc, 2, labels=True)
    svc.controller.config = ControllerConfig(power=False)
    for i in range(4):
        assert _vm(svc, f"pinned{i}", required_labels={"rack": "r0"}) == "h0"
        _util(svc, f"pinned{i}", "h0", 1.0)
    for k in range(3):
        rep = svc.controller.reconcile(T0 + k * INTERVAL)
        assert rep.migrations == []
    assert any("placement filter" in h["reason"] for h in rep.held)
    assert _hosts(svc)["h0"][1] == 4


def test_dpm_powers_empty_hosts_off_and_boots_one_before_demand_needs_it(svc: Services) -> None:
    _pool(svc, 3, overcommit=2.0)
    clock = SimClock(T0)
    d = svc.driver
    assert isinstance(d, SimDriver)
    d.clock, d.boot_s = (lambda: clock.now), 90.0
    svc.controller.config = ControllerConfig(limits=Limits(per_host=4, per_pool=8), spare_hosts=0)
    for i in range(5):
        _vm(svc, f"vm{i}", vcpu=4)
        _util(svc, f"vm{i}", "h0", 0.2)  # light: one host carries it
    loop = _loop(svc, clock)
    _rounds(svc, clock, loop, 1)
    st = _hosts(svc)
    assert st["h0"] == ("up", 5) and st["h1"][0] == "standby" and st["h2"][0] == "standby"
    offs = [e for e in svc.events.list_events(limit=50) if e.kind == "controller.power_off"]
    assert len(offs) == 2 and all("figures" in e.data and "rule" in e.data for e in offs)
    # demand grows above the band: a standby host is switched on and joins once booted
    for i in range(5):
        _util(svc, f"vm{i}", "h0", 1.0)  # 20 vCPUs busy on 16: above the band
    _rounds(svc, clock, loop, 1)
    assert [e for e in svc.events.list_events(limit=50) if e.kind == "controller.power_on"]
    assert sorted(s for s, _ in _hosts(svc).values()) == ["standby", "standby", "up"]  # still booting
    _rounds(svc, clock, loop, 4)  # 120 s > 90 s of boot
    st = _hosts(svc)
    assert sorted(s for s, _ in st.values()).count("up") == 2
    # ... and the controller then balances onto it
    _rounds(svc, clock, loop, 3)
    assert sum(1 for s, w in _hosts(svc).values() if s == "up" and w > 0) == 2


def test_a_host_whose_driver_cannot_power_is_skipped_with_the_reason(svc: Services, monkeypatch) -> None:
    _pool(svc, 2)
    d = svc.driver
    assert isinstance(d, SimDriver)
    from poolvisor.drivers.protocols import Capability

    monkeypatch.setattr(d, "capabilities", frozenset(c for c in Capability if c is not Capability.POWER))
    _pool_more = svc.hosts.create_host("h2", {"vcpu": 16, "memory_mib": 65536}, pool="p")
    assert _pool_more.state == "up"
    _vm(svc, "vm0")
    rep = svc.controller.reconcile(T0)
    assert rep.power and all("cannot power" in p["skipped"] for p in rep.power)
    assert _hosts(svc)["h1"][0] == "up"


def test_dpm_keeps_a_spare_host_on(svc: Services) -> None:
    _pool(svc, 4)
    _vm(svc, "vm0")
    _util(svc, "vm0", "h0", 0.5)
    rep = svc.controller.reconcile(T0)
    assert len([p for p in rep.power if p["action"] == "off"]) == 2
    st = _hosts(svc)
    assert st["h0"] == ("up", 1) and sorted(s for s, _ in st.values()) == ["standby", "standby", "up", "up"]


def test_a_standby_host_stays_off_after_a_restart(svc: Services, tmp_path) -> None:
    _pool(svc, 3)
    _vm(svc, "vm0")
    svc.controller.reconcile(T0)
    off = sorted(h for h, (s, _) in _hosts(svc).items() if s == "standby")
    assert len(off) == 1  # h1 or h2; the other one is the spare
    again = open_services(f"sqlite:///{tmp_path / 'ctl.db'}")  # a new process: a new sim world
    try:
        again.controller.reconcile(T0 + INTERVAL)
        assert sorted(h for h, (s, _) in _hosts(again).items() if s == "standby") == off
        assert not [e for e in again.events.list_events(limit=50) if e.message.endswith("(was standby)")]
    finally:
        again.close()


def test_demo_guests_replay_their_recorded_day_also_after_a_restart(svc: Services, tmp_path) -> None:
    from poolvisor.demo.cluster import seed_demo
    from poolvisor.demo.usage import seed_demo_usage

    seed_demo(svc, 3)
    assert seed_demo_usage(svc, 6) == 6

    def measured(s: Services) -> list[float]:
        got: list[float] = []
        for h in s.hosts.list_hosts():
            got += [v.cpu_util for v in s.drivers.workload_stats(h.name).workload_stats(h.name).values()]
        return got

    first = measured(svc)
    assert len(first) == 6 and max(first) < 1.0  # the recorded shapes, not the sim's default 100 %
    again = open_services(f"sqlite:///{tmp_path / 'ctl.db'}")
    try:
        assert seed_demo_usage(again, 6) == 0  # nothing created...
        d = again.driver
        assert isinstance(d, SimDriver)  # ...but the guests get their history to replay again
        assert len(d.fabric.profiles) == 6 and all(max(v) < 1.0 for v, _, _ in d.fabric.profiles.values())
    finally:
        again.close()


def _soft_pool(svc: Services, policy: str, hosts: int = 3, **cfg: object) -> None:
    """h0 busy (a of soft-anti-affinity group g, and three 4-vCPU VMs), b of g alone on h1 (the
    least loaded host: where a planner that ignores g would send a), h2 half busy."""
    _pool(svc, hosts)
    svc.controller.config = ControllerConfig(power=False, policy=policy, **cfg)  # type: ignore[arg-type]
    assert _vm(svc, "b", vcpu=1, mem=1024, group="g", group_policy="soft-anti-affinity", host="h1") == "h1"
    assert _vm(svc, "a", vcpu=1, mem=1024, group="g", host="h0") == "h0"
    _util(svc, "a", "h0", 1.0)
    _util(svc, "b", "h1", 0.1)
    for i in range(3):
        assert _vm(svc, f"big{i}", vcpu=4, mem=4096, host="h0") == "h0"
        _util(svc, f"big{i}", "h0", 1.0)
    if hosts > 2:
        assert _vm(svc, "c", vcpu=4, mem=4096, host="h2") == "h2"
        _util(svc, "c", "h2", 1.0)


def test_soft_anti_affinity_is_weighed_by_the_planner_and_explained(svc: Services) -> None:
    _soft_pool(svc, "spread")
    rep = svc.controller.reconcile(T0)
    moved = {m["workload"]: m for m in rep.migrations}
    assert "demo/a" in moved, rep
    m = moved["demo/a"]
    assert m["to"] == "h2"  # not h1, the least loaded: b is there
    assert m["figures"]["soft_penalty"] == 0.0
    assert any("h1" in alt and "soft penalty 1" in alt for alt in m["alternatives"]), m


def test_the_controller_reroutes_a_move_that_breaks_a_soft_rule(svc: Services) -> None:
    """A PABFD policy picks destinations by power, blind to groups: the controller's check sends
    the move to a host that keeps the rule and says which it avoided."""
    _soft_pool(svc, "thr-mmt-0.5")
    rep = svc.controller.reconcile(T0)
    m = {x["workload"]: x for x in rep.migrations}["demo/a"]
    assert m["to"] == "h2" and m["rule"] == "thr"
    assert m["figures"]["soft_penalty"] == 0.0 and m["figures"]["soft_penalty_planned"] == 1.0
    assert m["alternatives"][0].startswith("h1 (planned; it bends soft-anti-affinity of group g")
    _run_tasks(svc)
    hosts = {w.name: w.host for w in svc.workloads.list_workloads("demo")}
    assert hosts["a"] != hosts["b"]
    moved = [e for e in svc.events.list_events(limit=50) if e.kind == "controller.migrate"
             and e.subject == "workload/demo/a"]
    assert moved and moved[0].data["figures"]["soft_penalty_planned"] == 1.0  # the event explains it


def test_a_move_with_no_way_to_keep_a_soft_rule_is_bent_and_pays_for_it(svc: Services) -> None:
    # two hosts: a can only go where b is; the imbalance move bends the rule, says so and pays
    _soft_pool(svc, "adaptive", hosts=2)
    rep = svc.controller.reconcile(T0)
    m = {x["workload"]: x for x in rep.migrations}["demo/a"]
    assert m["to"] == "h1" and m["figures"]["soft_penalty"] == 1.0
    assert m["figures"]["soft_cost"] == pytest.approx(0.02)
    assert m["alternatives"][0] == ("bends soft-anti-affinity of group g: 1 more member(s) together with "
                                    "it: no powered-on host keeps the rule")


def test_a_balancing_move_pays_the_soft_cost(svc: Services) -> None:
    # ...and with a high soft cost the imbalance pass holds a rather than bend the rule
    _soft_pool(svc, "adaptive", hosts=2, soft_cost=10.0)
    rep = svc.controller.reconcile(T0)
    assert "demo/a" not in {x["workload"] for x in rep.migrations}
    assert rep.migrations  # the others still balance
    assert any(h["workload"] == "demo/a" for h in rep.held)
