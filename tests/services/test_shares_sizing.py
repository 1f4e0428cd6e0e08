"""What placement sets aside for a workload declaring reservation/limit/shares: the pool's static
allocation policy (min / max / balanced), stored with the workload; undeclared workloads unchanged."""

from __future__ import annotations

import pytest

from poolvisor.domain.errors import InvalidInputError, NotFoundError, NoValidHostError
from poolvisor.services import Services

DECL = {"demand": {"vcpu": 4, "memory_mib": 4096}, "reservation": {"vcpu": 1, "memory_mib": 2048},
        "shares": {"vcpu": 1000, "memory_mib": 2000}}


@pytest.fixture
def svc(lite: Services) -> Services:
    lite.catalog.create_pool("p")
    lite.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192}, pool="p")
    lite.catalog.create_project("a")
    return lite


@pytest.mark.parametrize(("policy", "vcpu", "mem"), [("min", 1, 2048), ("max", 4, 4096),
                                                      ("balanced", 2.5, 4096)])
def test_the_pool_policy_decides_what_is_set_aside(svc: Services, policy: str, vcpu: float,
                                                   mem: float) -> None:
    assert svc.shares.get_allocation_policy("p") == "max"
    svc.shares.set_allocation_policy("p", policy)
    w = svc.workloads.create_workload("a", "w", pool="p", **DECL)
    assert w.demand == {"vcpu": vcpu, "memory_mib": mem}
    assert w.resources == {"vcpu": {"reservation": 1, "limit": 4, "shares": 1000},
                           "memory_mib": {"reservation": 2048, "limit": 4096, "shares": 2000}}
    got = svc.workloads.get_workload("a", "w")
    assert got.demand == w.demand and got.resources == w.resources
    pool = {p.name: p for p in svc.catalog.list_pools()}["p"]
    assert (pool.allocated["vcpu"], pool.allocated["memory_mib"]) == (vcpu, mem)  # the ledger holds it


def test_min_packs_more_than_max(svc: Services) -> None:
    svc.shares.set_allocation_policy("p", "min")
    for i in range(4):  # reservations: 4 x 2048 MiB fit on 8192
        svc.workloads.create_workload("a", f"m{i}", pool="p", **DECL)
    with pytest.raises(NoValidHostError):
        svc.workloads.create_workload("a", "m4", pool="p", **DECL)


def test_undeclared_workloads_are_sized_by_their_demand_under_every_policy(svc: Services) -> None:
    svc.shares.set_allocation_policy("p", "min")
    w = svc.workloads.create_workload("a", "plain", demand={"vcpu": 2}, pool="p")
    assert w.demand == {"vcpu": 2} and w.resources is None


def test_declarations_are_checked(svc: Services) -> None:
    bad = [({"reservation": {"vcpu": 5}}, "exceeds the limit"), ({"limit": {"gpu": 1}}, "does not demand"),
           ({"shares": {"vcpu": 0}}, "shares"), ({"reservation": {"vcpu": -1}}, ">= 0"),
           ({"limit": {"vcpu": float("nan")}}, "finite")]
    for extra, why in bad:
        with pytest.raises(InvalidInputError, match=why):
            svc.workloads.create_workload("a", "x", demand={"vcpu": 4}, pool="p", **extra)
    with pytest.raises(InvalidInputError):
        svc.shares.set_allocation_policy("p", "median")
    with pytest.raises(NotFoundError):
        svc.shares.set_allocation_policy("ghost", "min")
