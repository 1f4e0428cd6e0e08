"""One sizing rule on every path that claims for a declared workload: a batch item falls back to
pools whose policy sets aside less exactly as a single create does, and a live migration (also
what consolidation, evacuation and drain run) claims what the *target* host's pool sets aside,
keeps `sized_by`, and a rolled-back move restores the source's claim. The pure parts (the amount
per policy, the fallback order) are tested at the end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from poolvisor.domain.errors import NoValidHostError
from poolvisor.drivers.base import DriverError
from poolvisor.policies import shares as share_policy
from poolvisor.services import Services
from poolvisor.services.leases import utcnow

DECL = {"demand": {"vcpu": 4, "memory_mib": 1024}, "reservation": {"vcpu": 1}}


class Crash(BaseException):
    """Stands for the process dying mid-migration (nothing catches it)."""


def _pool(s: Services, name: str, hosts: dict[str, float], policy: str) -> None:
    s.catalog.create_pool(name)
    for h, vcpu in hosts.items():
        s.hosts.create_host(h, {"vcpu": vcpu, "memory_mib": 8192}, pool=name)
    s.shares.set_allocation_policy(name, policy)


def _allocated(s: Services, pool: str) -> float:
    return float({p.name: p for p in s.catalog.list_pools()}[pool].allocated["vcpu"])


@pytest.fixture
def two(lite: Services) -> Services:
    """The reviewer's scenario: pool mx (policy max) full, pool mn (policy min) with a 2-vCPU host."""
    _pool(lite, "mx", {"hmax": 8}, "max")
    _pool(lite, "mn", {"hmin": 2}, "min")
    lite.catalog.create_project("a")
    lite.workloads.create_workload("a", "filler", demand={"vcpu": 8, "memory_mib": 1024}, pool="mx")
    return lite


@pytest.mark.parametrize("gang", [False, True])
def test_a_batch_item_falls_back_like_the_single_create(two: Services, gang: bool) -> None:
    extra = {"group": "g", "group_policy": "soft-anti-affinity"} if gang else {}
    single = two.workloads.create_workload("a", "single", **DECL, **extra)
    assert (single.host, single.demand["vcpu"], single.sized_by) == ("hmin", 1.0, "min")
    two.workloads.delete_workload("a", "single")
    dry = two.batch.create_workloads_batch("a", [{"name": "b1", **DECL, **extra}], dry_run=True)
    assert [(w.host, w.demand["vcpu"]) for w in dry.workloads] == [("hmin", 1.0)]
    res = two.batch.create_workloads_batch("a", [{"name": "b1", **DECL, **extra}])
    [w] = res.workloads
    assert (w.host, w.demand, w.sized_by) == ("hmin", single.demand, "min")
    assert "sets aside less" in res.plan["summary"]
    assert _allocated(two, "mn") == 1.0 and two.repair.check().ok  # the ledger holds min's amount


def test_a_batch_falls_back_all_or_nothing(two: Services) -> None:
    """Three items: the min pool's 2 vCPU take two reservations; the third fits nowhere, so nothing
    is created (all-or-nothing), or (not all-or-nothing) the two that fit."""
    items = [{"name": f"b{i}", **DECL} for i in range(3)]
    with pytest.raises(NoValidHostError, match="1 of 3"):
        two.batch.create_workloads_batch("a", items)
    assert _allocated(two, "mn") == 0.0 and {w.name for w in two.workloads.list_workloads()} == {"filler"}
    res = two.batch.create_workloads_batch("a", items, all_or_nothing=False)
    assert [(w.name, w.host, w.demand["vcpu"]) for w in res.workloads] == [("b0", "hmin", 1.0),
                                                                         ("b1", "hmin", 1.0)]
    assert res.unplaced == ["b2"] and _allocated(two, "mn") == 2.0 and two.repair.check().ok


@pytest.fixture
def roomy(lite: Services) -> Services:
    _pool(lite, "mx", {"hmax": 8}, "max")
    _pool(lite, "mn", {"hmin": 8}, "min")
    lite.catalog.create_project("a")
    return lite


def test_a_migration_claims_what_the_target_pool_sets_aside(roomy: Services) -> None:
    """min -> max pool and back: the claim, the stored demand, `sized_by` and each pool's ledger
    follow the target host's pool (the declaration naming no pool)."""
    w = roomy.workloads.create_workload("a", "m", host="hmin", **DECL)
    assert (w.demand["vcpu"], w.sized_by) == (1.0, "min")
    m = roomy.workloads.migrate_workload("a", "m", "hmax")
    rs = m.resources
    assert rs is not None
    want = share_policy.amount("max", rs)
    assert (m.host, m.demand, m.sized_by) == ("hmax", want, "max")
    assert (_allocated(roomy, "mx"), _allocated(roomy, "mn")) == (want["vcpu"], 0.0)
    got = roomy.workloads.get_workload("a", "m")
    assert got.demand == want and got.sized_by == "max" and roomy.repair.check().ok
    back = roomy.workloads.migrate_workload("a", "m", "hmin")
    want = share_policy.amount("min", rs)
    assert (back.host, back.demand, back.sized_by) == ("hmin", want, "min")
    assert (_allocated(roomy, "mx"), _allocated(roomy, "mn")) == (0.0, want["vcpu"])
    assert roomy.workloads.get_workload("a", "m").resources == rs and roomy.repair.check().ok


def test_a_migration_within_a_named_pool_keeps_its_sizing(roomy: Services) -> None:
    roomy.hosts.create_host("hmin2", {"vcpu": 8, "memory_mib": 8192}, pool="mn")
    w = roomy.workloads.create_workload("a", "m", pool="mn", **DECL)
    m = roomy.workloads.migrate_workload("a", "m")
    assert m.host != w.host and (m.demand, m.sized_by) == (w.demand, "min") and roomy.repair.check().ok


def test_a_migration_falls_back_to_a_pool_that_sets_aside_less(two: Services) -> None:
    """A declared workload on a max pool whose limit fits no other host moves (evacuation, drain,
    an unpinned migrate) to the min pool with the reservation, as a create would be placed."""
    two.hosts.create_host("hmax2", {"vcpu": 4, "memory_mib": 8192}, pool="mx")
    w = two.workloads.create_workload("a", "m", **DECL)
    assert (w.host, w.demand["vcpu"], w.sized_by) == ("hmax2", 4.0, "max")
    two.workloads.create_workload("a", "pad", demand={"vcpu": 0.5, "memory_mib": 64}, pool="mn")
    m = two.workloads.migrate_workload("a", "m")
    assert (m.host, m.demand["vcpu"], m.sized_by) == ("hmin", 1.0, "min")
    assert _allocated(two, "mx") == 8.0 and _allocated(two, "mn") == 1.5 and two.repair.check().ok


def test_a_failed_migration_restores_the_sources_claim(roomy: Services) -> None:
    roomy.workloads.create_workload("a", "m", host="hmin", **DECL)

    def refuse(*_a: object, **_k: object) -> None:
        raise DriverError("the target refused")

    roomy.driver.start_migration = refuse  # type: ignore[attr-defined,method-assign]
    with pytest.raises(DriverError):
        roomy.workloads.migrate_workload("a", "m", "hmax")
    w = roomy.workloads.get_workload("a", "m")
    assert (w.host, w.demand["vcpu"], w.sized_by) == ("hmin", 1.0, "min")
    assert (_allocated(roomy, "mx"), _allocated(roomy, "mn")) == (0.0, 1.0) and roomy.repair.check().ok


def test_a_migration_undone_by_the_repair_restores_the_sources_claim(roomy: Services) -> None:
    roomy.workloads.create_workload("a", "m", host="hmin", **DECL)

    def dying(*_a: object, **_k: object) -> None:
        raise Crash()

    roomy.driver.start_migration = dying  # type: ignore[attr-defined,method-assign]
    with pytest.raises(Crash):
        roomy.workloads.migrate_workload("a", "m", "hmax")
    assert _allocated(roomy, "mx") == 4.0  # the move claimed max's amount on the target
    del roomy.driver.start_migration  # type: ignore[attr-defined]
    [msg] = roomy.repair.run(now=utcnow() + timedelta(hours=1))
    assert "undone" in msg
    w = roomy.workloads.get_workload("a", "m")
    assert (w.host, w.demand["vcpu"], w.sized_by) == ("hmin", 1.0, "min")
    assert (_allocated(roomy, "mx"), _allocated(roomy, "mn")) == (0.0, 1.0)
    assert roomy.repair.check(now=utcnow() + timedelta(hours=1)).ok


def test_the_amount_and_the_fallback_order_are_pure() -> None:
    rs = {"vcpu": {"reservation": 1.0, "limit": 4.0, "shares": 1000.0}}
    assert [share_policy.amount(p, rs)["vcpu"] for p in ("min", "balanced", "max")] == [1.0, 2.5, 4.0]
    assert share_policy.fallback_order({7: "min", 3: "max", 5: "balanced", 2: "min", 9: "balanced"}) == \
        [5, 9, 2, 7]
    with pytest.raises(Exception, match="unknown allocation policy"):
        share_policy.fallback_order({1: "median"})
