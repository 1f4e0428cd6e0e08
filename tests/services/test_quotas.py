"""Project quotas: set and read, enforced by the claim's transaction (single and batch creations),
never exceeded by concurrent creations on SQLite and PostgreSQL (threads and two Services
instances, as two `serve` replicas sharing a database)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from svc_helpers import small_cluster

from poolvisor.domain.errors import InvalidInputError, NotFoundError, NoValidHostError, QuotaExceededError
from poolvisor.policies.quota import Excess, check
from poolvisor.services import Services, open_services
from poolvisor.services.quotas import RateLimit


def test_check_is_pure_and_names_the_first_broken_limit() -> None:
    assert check({"vcpu": 4}, {"vcpu": 4}, {"vcpu": 1}) is None  # exactly at the limit fits
    assert check({"vcpu": 4}, {"vcpu": 5}, {"vcpu": 2}) == Excess("vcpu", 3, 2, 4)
    assert check({"gpu": 0}, {"gpu": 1}, {"vcpu": 1}) is None  # not requested: never fails
    assert check({"workloads": 2, "vcpu": 1}, {"vcpu": 2, "workloads": 3}, {"vcpu": 1, "workloads": 1}) \
        == Excess("vcpu", 1, 1, 1)  # sorted keys: deterministic


def test_set_get_and_usage(lite: Services) -> None:
    small_cluster(lite)
    assert lite.quotas.get_quota("demo").limits == {}
    q = lite.quotas.set_quota("demo", {"vcpu": 3, "workloads": 2}, RateLimit(2.5, 4))
    assert q.limits == {"vcpu": 3.0, "workloads": 2.0} and q.rate_limit == RateLimit(2.5, 4)
    lite.workloads.create_workload("demo", "a", flavor="unit")
    u = lite.quotas.usage("demo")
    assert u.used == {"memory_mib": 1024.0, "vcpu": 1.0, "workloads": 1.0}
    assert u.available == {"vcpu": 2.0, "workloads": 1.0} and u.limits == q.limits
    for bad in ({"unobtainium": 1}, {"workloads": 1.5}, {"vcpu": -1}, {"vcpu": float("inf")}):
        with pytest.raises(InvalidInputError):
            lite.quotas.set_quota("demo", bad)
    with pytest.raises(InvalidInputError):
        lite.quotas.set_quota("demo", {}, RateLimit(0, 1))
    with pytest.raises(NotFoundError):
        lite.quotas.set_quota("nope", {"vcpu": 1})
    assert lite.quotas.set_quota("demo", {}).limits == {}  # removed
    assert lite.quotas.rate_limits() == {}


def test_creation_over_quota_is_refused_and_leaves_nothing(svc: Services) -> None:
    small_cluster(svc)
    svc.quotas.set_quota("demo", {"vcpu": 3, "workloads": 5})
    for i in range(3):
        svc.workloads.create_workload("demo", f"w{i}", flavor="unit")
    with pytest.raises(QuotaExceededError) as e:
        svc.workloads.create_workload("demo", "w3", demand={"vcpu": 2, "memory_mib": 10})
    assert e.value.status_code == 403 and e.value.code == "quota_exceeded"
    assert e.value.detail == {"project": "demo", "resource": "vcpu", "used": 3.0, "requested": 2.0,
                              "limit": 3.0}
    assert "vcpu used 3 + requested 2 > limit 3" in e.value.message
    assert {w.name for w in svc.workloads.list_workloads("demo")} == {"w0", "w1", "w2"}
    assert svc.repair.check().ok
    # a lower limit takes nothing away; deleting frees room again
    svc.quotas.set_quota("demo", {"vcpu": 1})
    assert len(svc.workloads.list_workloads("demo")) == 3
    with pytest.raises(QuotaExceededError):
        svc.workloads.create_workload("demo", "w3", flavor="unit")
    for i in range(3):
        svc.workloads.delete_workload("demo", f"w{i}")
    svc.workloads.create_workload("demo", "w3", flavor="unit")
    # the count quota; other projects are not limited by it
    svc.quotas.set_quota("demo", {"workloads": 1})
    with pytest.raises(QuotaExceededError) as e:
        svc.workloads.create_workload("demo", "w4", flavor="unit")
    assert e.value.detail["resource"] == "workloads" and e.value.detail["used"] == 1.0
    svc.catalog.create_project("other")
    svc.workloads.create_workload("other", "w4", flavor="unit")


def test_migration_and_dry_runs_do_not_count_twice(lite: Services) -> None:
    small_cluster(lite)
    lite.quotas.set_quota("demo", {"vcpu": 1, "workloads": 1})
    w = lite.workloads.create_workload("demo", "a", flavor="unit")
    moved = lite.workloads.migrate_workload("demo", "a")  # at its limit: a move is not a new claim
    assert moved.host != w.host and lite.quotas.usage("demo").used["vcpu"] == 1.0


def test_batch_is_checked_as_a_whole(lite: Services) -> None:
    small_cluster(lite)
    lite.quotas.set_quota("demo", {"vcpu": 3})
    specs = [{"name": f"b{i}", "flavor": "unit"} for i in range(4)]
    with pytest.raises(QuotaExceededError) as e:
        lite.batch.create_workloads_batch("demo", specs)
    assert e.value.detail == {"project": "demo", "resource": "vcpu", "used": 0.0, "requested": 4.0,
                              "limit": 3.0}
    assert lite.workloads.list_workloads("demo") == []
    assert len(lite.batch.create_workloads_batch("demo", specs[:3]).workloads) == 3
    assert lite.quotas.usage("demo").available == {"vcpu": 0.0}


def test_concurrent_creations_never_exceed_the_quota(db_url: str) -> None:
    """40 creations from 16 threads over two Services instances (two replicas) against a quota of
    7 workloads and 9 vCPUs, with room for 24 on the hosts: exactly as many as fit the quota land
    (the first limit reached, whichever it is), the rest are refused with quota_exceeded."""
    a = open_services(db_url)
    b = open_services(db_url)
    try:
        small_cluster(a, hosts=3, vcpu=8, memory=8192)
        a.catalog.create_flavor("two", {"vcpu": 2, "memory_mib": 1024})
        a.quotas.set_quota("demo", {"workloads": 7, "vcpu": 9})
        lock = threading.Lock()
        ok: list[str] = []
        refused: list[str] = []

        def create(i: int) -> None:
            s = a if i % 2 else b
            try:
                s.workloads.create_workload("demo", f"c{i}", flavor="two" if i % 5 == 0 else "unit")
            except QuotaExceededError:
                with lock:
                    refused.append(f"c{i}")
                return
            with lock:
                ok.append(f"c{i}")

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(40)))
        used = a.quotas.usage("demo").used
        assert used["workloads"] <= 7 and used["vcpu"] <= 9, used
        assert len(ok) == used["workloads"] and len(ok) + len(refused) == 40
        assert used["workloads"] == 7 or used["vcpu"] >= 8  # stopped by a limit, not by chance
        assert {w.name for w in a.workloads.list_workloads("demo")} == set(ok)
        assert a.repair.check().ok
    finally:
        a.close()
        b.close()


def test_quota_of_a_full_pool_still_says_no_valid_host(lite: Services) -> None:
    small_cluster(lite, hosts=1, vcpu=1)
    lite.quotas.set_quota("demo", {"vcpu": 10})
    lite.workloads.create_workload("demo", "a", flavor="unit")
    with pytest.raises(NoValidHostError):
        lite.workloads.create_workload("demo", "b", flavor="unit")


def test_dry_runs_say_what_the_quota_would_say(lite: Services) -> None:
    small_cluster(lite)
    lite.quotas.set_quota("demo", {"vcpu": 1})
    assert lite.workloads.create_workload("demo", "a", flavor="unit", dry_run=True).state == "dry-run"
    lite.workloads.create_workload("demo", "a", flavor="unit")
    with pytest.raises(QuotaExceededError):
        lite.workloads.create_workload("demo", "b", flavor="unit", dry_run=True)
    with pytest.raises(QuotaExceededError):
        lite.batch.create_workloads_batch("demo", [{"name": "b", "flavor": "unit"}], dry_run=True)
    assert [w.name for w in lite.workloads.list_workloads("demo")] == ["a"]


def test_the_quota_is_checked_before_placement(lite: Services) -> None:
    """A request over both the quota and the pool's capacity is told about the quota (what the
    project can change), not that no host fits."""
    small_cluster(lite)
    lite.quotas.set_quota("demo", {"vcpu": 8})
    with pytest.raises(QuotaExceededError):
        lite.workloads.create_workload("demo", "big", demand={"vcpu": 80, "memory_mib": 1})
