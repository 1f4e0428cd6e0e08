"""Declared reservation/limit/shares on every path that claims or re-creates a workload: batch and
gang items (the single create's sizing rule), creates naming no pool (the chosen host's pool's
policy sizes the claim), HA restarts (the declaration goes to the new host's driver), and what
the sim driver grants under contention read back by the controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolvisor.clock import SimClock
from poolvisor.domain.errors import InvalidInputError, NoValidHostError
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services
from poolvisor.services.ha import HaLoop, HaSettings

DECL = {"demand": {"vcpu": 4, "memory_mib": 1024}, "reservation": {"vcpu": 1}, "shares": {"vcpu": 1000}}


def _pool(s: Services, name: str, hosts: int, vcpu: float, policy: str) -> None:
    s.catalog.create_pool(name)
    for i in range(hosts):
        s.hosts.create_host(f"{name}-h{i}", {"vcpu": vcpu, "memory_mib": 8192}, pool=name)
    s.shares.set_allocation_policy(name, policy)


def _allocated(s: Services, pool: str) -> dict[str, float]:
    return dict({p.name: p for p in s.catalog.list_pools()}[pool].allocated)


@pytest.mark.parametrize("gang", [False, True])
def test_batch_items_claim_their_reservations_under_min(lite: Services, gang: bool) -> None:
    """Four items of limit 4 reserving 1 vCPU fit one 4-vCPU host under `min` (the packer and
    the gang planner alike); their declaration is stored and reaches the driver."""
    _pool(lite, "p", 1, 4, "min")
    extra = {"required_labels": {}} if not gang else {"group": "g", "group_policy": "affinity"}
    specs = [{"name": f"w{i}", **DECL, **extra} for i in range(4)]
    res = lite.batch.create_workloads_batch("a", specs, pool="p", create_project=True)
    assert [w.demand for w in res.workloads] == [{"vcpu": 1.0, "memory_mib": 1024.0}] * 4
    assert _allocated(lite, "p")["vcpu"] == 4.0  # the ledger holds the reservations
    w = lite.workloads.get_workload("a", "w0")
    assert w.resources == {"vcpu": {"reservation": 1, "limit": 4, "shares": 1000},
                           "memory_mib": {"reservation": 1024, "limit": 1024, "shares": 1000}}
    assert w.sized_by == "min"
    d = lite.driver
    assert isinstance(d, SimDriver)
    assert d.hosts["p-h0"].guests["a/w0"].workload.spec == w.resources  # the host shares by it
    granted = lite.drivers.workload_stats("p-h0").workload_stats("p-h0")
    assert sum(g.granted["vcpu"] for g in granted.values()) == pytest.approx(4.0)


def test_batch_is_all_or_nothing_with_declarations(lite: Services) -> None:
    _pool(lite, "p", 1, 4, "max")  # max sets aside the limit: two of 4 vCPU do not fit
    with pytest.raises(Exception, match="do not fit"):
        lite.batch.create_workloads_batch("a", [{"name": f"w{i}", **DECL} for i in range(2)], pool="p",
                                          create_project=True)
    assert _allocated(lite, "p")["vcpu"] == 0.0 and lite.workloads.list_workloads() == []


def test_invalid_batch_declarations_name_the_item(lite: Services) -> None:
    _pool(lite, "p", 1, 4, "min")
    ok = {"name": "ok", **DECL}
    for bad, why in (({"reservation": {"vcpu": 5}}, "exceeds the limit"),
                     ({"limit": {"gpu": 1}}, "does not demand"), ({"shares": {"vcpu": 0}}, "shares"),
                     ({"reservation": "lots"}, "mapping")):
        with pytest.raises(InvalidInputError, match=rf"batch item 1: .*{why}"):
            lite.batch.create_workloads_batch("a", [ok, {"name": "bad", "demand": {"vcpu": 4}, **bad}],
                                              pool="p", create_project=True)
    assert lite.workloads.list_workloads() == []


@pytest.mark.parametrize(("policy", "vcpu"), [("min", 1.0), ("balanced", 2.5), ("max", 4.0)])
def test_a_create_naming_no_pool_is_sized_by_the_chosen_hosts_pool(lite: Services, policy: str,
                                                                   vcpu: float) -> None:
    _pool(lite, "p", 1, 8, policy)
    w = lite.workloads.create_workload("a", "w", create_project=True, **DECL)
    assert w.host == "p-h0" and w.demand["vcpu"] == vcpu and w.sized_by == policy
    assert _allocated(lite, "p")["vcpu"] == vcpu
    got = lite.workloads.get_workload("a", "w")
    assert got.demand == w.demand and got.sized_by == policy
    assert lite.repair.check().ok


def test_when_the_limit_fits_nowhere_pools_that_set_aside_less_are_tried(lite: Services) -> None:
    """Limit 4 fits no host; a balanced pool (2.5 of 3 free) is tried before a min one (1 of 2),
    then the min pool once the balanced one is full; nothing fits: the max-sized refusal."""
    _pool(lite, "bal", 1, 3, "balanced")
    _pool(lite, "dense", 1, 2, "min")
    dry = lite.workloads.create_workload("a", "w0", dry_run=True, create_project=True, **DECL)
    assert (dry.host, dry.demand["vcpu"]) == ("bal-h0", 2.5)
    w = lite.workloads.create_workload("a", "w0", create_project=True, **DECL)
    assert (w.host, w.demand["vcpu"], w.sized_by) == ("bal-h0", 2.5, "balanced")
    w = lite.workloads.create_workload("a", "w1", create_project=True, **DECL)
    assert (w.host, w.demand["vcpu"], w.sized_by) == ("dense-h0", 1.0, "min")
    lite.workloads.create_workload("a", "w2", create_project=True, **DECL)  # the second min slot
    with pytest.raises(NoValidHostError, match="vcpu"):
        lite.workloads.create_workload("a", "w3", create_project=True, **DECL)
    assert lite.workloads.get_workload("a", "w1").resources is not None
    assert _allocated(lite, "dense")["vcpu"] == 2.0 and _allocated(lite, "bal")["vcpu"] == 2.5
    assert lite.repair.check().ok


def test_a_batch_naming_no_pool_is_sized_per_chosen_host(lite: Services) -> None:
    _pool(lite, "dense", 1, 4, "min")
    lite.hosts.create_host("lone", {"vcpu": 8, "memory_mib": 8192})  # no pool: the default, max
    lite.hosts.set_host_state("lone", "maintenance")
    res = lite.batch.create_workloads_batch("a", [{"name": "w0", **DECL}], create_project=True)
    assert res.workloads[0].host == "dense-h0" and res.workloads[0].demand["vcpu"] == 1.0
    lite.hosts.set_host_state("lone", "up")
    lite.hosts.set_host_state("dense-h0", "maintenance")
    res = lite.batch.create_workloads_batch("a", [{"name": "w1", **DECL}], create_project=True)
    assert res.workloads[0].host == "lone" and res.workloads[0].demand["vcpu"] == 4.0
    assert lite.workloads.get_workload("a", "w1").sized_by == "max"
    assert lite.repair.check().ok


def test_ha_restart_carries_the_declaration_to_the_new_host(lite: Services) -> None:
    """Two guests sharing 3:1 on a failed host restart together on another: its driver gets
    their declarations and grants them 3 and 1 vCPU again (not 2 and 2, as without them)."""
    _pool(lite, "p", 1, 4, "min")
    d = lite.driver
    assert isinstance(d, SimDriver)
    for name, sh in (("big", 3000), ("small", 1000)):
        lite.workloads.create_workload("a", name, demand={"vcpu": 4, "memory_mib": 1024}, pool="p",
                                       reservation={"vcpu": 1}, shares={"vcpu": sh}, create_project=True)
    lite.hosts.create_host("p-h1", {"vcpu": 4, "memory_mib": 8192}, pool="p")
    lite.ha.settings = HaSettings(fail_after=1)
    clock = SimClock()
    HaLoop(lite.ha, clock=clock).start()
    clock.run(until=1.5)
    d.fail("p-h0")
    clock.run(until=6.0)
    for name in ("big", "small"):
        w = lite.workloads.get_workload("a", name)
        assert (w.state, w.host, w.demand["vcpu"], w.sized_by) == ("running", "p-h1", 1.0, "min")
    assert d.hosts["p-h1"].guests["a/big"].workload.spec == lite.workloads.get_workload("a", "big").resources
    got = lite.drivers.workload_stats("p-h1").workload_stats("p-h1")
    assert got["a/big"].granted["vcpu"] == pytest.approx(3.0)
    assert got["a/small"].granted["vcpu"] == pytest.approx(1.0)
    assert lite.repair.check().ok


def test_the_controller_reports_what_contention_granted(lite: Services) -> None:
    _pool(lite, "p", 1, 4, "min")
    for name, sh in (("big", 3000), ("small", 1000)):
        lite.workloads.create_workload("a", name, demand={"vcpu": 4, "memory_mib": 1024}, pool="p",
                                       reservation={"vcpu": 1}, shares={"vcpu": sh}, create_project=True)
    lite.workloads.create_workload("a", "calm", demand={"vcpu": 0.5, "memory_mib": 64}, pool="p",
                                   create_project=True)
    rep = lite.controller.reconcile(now=1_700_000_000.0)
    by = {c["workload"]: c for c in rep.contended}
    assert set(by) == {"a/big", "a/small"}  # calm asks little and the water level covers it
    assert by["a/big"]["wanted"]["vcpu"] == 4.0
    # 4 vCPU: calm keeps its 0.5; of 3.5, shares 3:1 would give 2.625 and 0.875, but small's
    # reservation is 1, so small gets 1 and big the other 2.5
    assert by["a/big"]["granted"]["vcpu"] == pytest.approx(2.5)
    assert by["a/small"]["granted"]["vcpu"] == pytest.approx(1.0)
    assert rep.contended[0]["workload"] == "a/small"  # the largest shortfall first
    last = lite.controller.status().last_round
    assert last is not None and last["contended_count"] == 2
    rec = lite.shares.granted(lite.workloads.get_workload("a", "big"))
    assert rec.granted is not None and rec.granted["vcpu"] == pytest.approx(by["a/big"]["granted"]["vcpu"])


def test_a_restored_backup_keeps_the_declaration(lite: Services, tmp_path: Path) -> None:
    """The same class as HA: a restore re-creates the guest; it is sized by the create's rule again
    and its host's driver gets the declaration (3:1 shares on a contended host)."""
    _pool(lite, "p", 2, 4, "min")
    (tmp_path / "b").mkdir()
    lite.backups.add_target("t", str(tmp_path / "b"))
    for name, sh in (("big", 3000), ("small", 1000)):
        lite.workloads.create_workload("a", name, demand={"vcpu": 4, "memory_mib": 1024}, pool="p",
                                       reservation={"vcpu": 1}, shares={"vcpu": sh}, create_project=True)
    host = lite.workloads.get_workload("a", "big").host
    assert host is not None
    for name in ("big", "small"):
        tid = lite.backups.submit_create("a", name, name=f"b-{name}").id
        assert tid in lite.tasks.claim_tasks(10)
        assert lite.tasks.run_task(tid).state == "succeeded"
    for name in ("big", "small"):
        tid = lite.backups.submit_restore("a", name, f"b-{name}", as_name=f"{name}2", host=host).id
        assert tid in lite.tasks.claim_tasks(10)
        t = lite.tasks.run_task(tid)
        assert t.state == "succeeded", t.error
        w = lite.workloads.get_workload("a", f"{name}2")
        assert w.resources == lite.workloads.get_workload("a", name).resources and w.sized_by == "min"
    lite.workloads.workload_action("a", "big", "stop")
    lite.workloads.workload_action("a", "small", "stop")
    got = lite.drivers.workload_stats(host).workload_stats(host)
    assert got["a/big2"].granted["vcpu"] == pytest.approx(3.0)
    assert got["a/small2"].granted["vcpu"] == pytest.approx(1.0)
