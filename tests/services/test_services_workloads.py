"""Workloads: placement with explanations, dry run, constraints, lifecycle, migration, failures."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError, NoValidHostError
from poolvisor.drivers.base import DriverError
from poolvisor.store.rows import AllocationRow, EventRow, WorkloadRow


def count(svc, row):
    return svc.store.run(lambda s: s.scalar(select(func.count()).select_from(row)), write=False)


def test_create_places_and_explains(svc):
    small_cluster(svc)
    w = svc.workloads.create_workload("demo", "vm1", flavor="unit")
    assert (w.state, w.project, w.kind) == ("running", "demo", "vm")
    assert w.demand == {"vcpu": 1.0, "memory_mib": 1024.0}
    assert w.host in {"h0", "h1", "h2"} and w.created_at.tzinfo is not None
    assert w.explanation["hosts_considered"] == 3 and w.explanation["top"][0]["host"] == w.host
    assert svc.workloads.get_workload("demo", "vm1").explanation == w.explanation
    h = svc.hosts.get_host(w.host)
    assert h.allocated["vcpu"] == 1 and h.workloads == 1 and h.generation >= 1
    assert svc.catalog.get_project("demo").workloads == 1
    # best fit packs: the second lands on the same host
    assert svc.workloads.create_workload("demo", "vm2", demand={"vcpu": 2}).host == w.host
    assert svc.repair.check().ok
    assert [e.kind for e in svc.events.list_events("demo")][:2] == ["workload.created", "workload.placed"]


def test_dry_run_writes_nothing(svc):
    small_cluster(svc)
    before = (count(svc, WorkloadRow), count(svc, AllocationRow), count(svc, EventRow))
    w = svc.workloads.create_workload("demo", "vm1", flavor="unit", dry_run=True, group="g",
                                      group_policy="affinity")
    assert w.state == "dry-run" and w.host is not None and w.explanation["candidates"] == 3
    assert (count(svc, WorkloadRow), count(svc, AllocationRow), count(svc, EventRow)) == before
    assert all(h.generation == 0 for h in svc.hosts.list_hosts())


def test_no_valid_host_carries_the_explanation(svc):
    small_cluster(svc)
    with pytest.raises(NoValidHostError) as ei:
        svc.workloads.create_workload("demo", "big", demand={"vcpu": 5})
    detail = ei.value.detail
    cap = next(f for f in detail["filters"] if f["filter"] == "capacity")
    assert cap["rejected"] == 3 and cap["dominant_reason"] == "insufficient vcpu"
    assert "capacity rejected 3" in ei.value.message
    assert count(svc, WorkloadRow) == count(svc, AllocationRow) == 0


@pytest.mark.parametrize("kwargs,error,match", [
    ({"demand": {"vcpu": -1}}, InvalidInputError, ">= 0"),
    ({"demand": {"vcpu": 1e300}}, InvalidInputError, "exceeds"),
    ({"demand": {"tpu": 1}}, InvalidInputError, "unknown resource"),
    ({"demand": {"vcpu": 0}}, InvalidInputError, "at least one"),
    ({"demand": {}}, InvalidInputError, "at least one"),
    ({}, InvalidInputError, "exactly one"),
    ({"flavor": "unit", "demand": {"vcpu": 1}}, InvalidInputError, "exactly one"),
    ({"flavor": "nope"}, NotFoundError, "flavor"),
    ({"flavor": "unit", "pool": "nope"}, NotFoundError, "pool"),
    ({"flavor": "unit", "kind": "unikernel"}, InvalidInputError, "kind"),
    ({"flavor": "unit", "group": "g", "group_policy": "friends"}, InvalidInputError, "group policy"),
    ({"flavor": "unit", "group_policy": "affinity"}, InvalidInputError, "needs a group"),
    ({"flavor": "unit", "priority": 10**9}, InvalidInputError, "priority"),
    ({"flavor": "unit", "required_labels": {"k": 3}}, InvalidInputError, "strings"),
])
def test_bad_create_input_leaves_no_rows(lite, kwargs, error, match):
    small_cluster(lite)
    events = count(lite, EventRow)
    with pytest.raises(error, match=match):
        lite.workloads.create_workload("demo", "vm1", **kwargs)
    assert count(lite, WorkloadRow) == count(lite, AllocationRow) == 0
    assert count(lite, EventRow) == events
    assert lite.repair.check().ok


def test_missing_project_and_duplicate_name(lite):
    small_cluster(lite)
    with pytest.raises(NotFoundError, match="project"):
        lite.workloads.create_workload("nope", "vm1", flavor="unit")
    lite.workloads.create_workload("demo", "vm1", flavor="unit")
    with pytest.raises(ConflictError, match="already exists"):
        lite.workloads.create_workload("demo", "vm1", flavor="unit")
    lite.catalog.create_project("other")
    assert lite.workloads.create_workload("other", "vm1",
                                          flavor="unit").project == "other"  # names are per project
    assert [w.project for w in lite.workloads.list_workloads("other")] == ["other"]
    assert len(lite.workloads.list_workloads()) == 2


def test_failed_driver_create_rolls_back(lite):
    small_cluster(lite)
    lite.driver.inject("create")  # type: ignore[attr-defined]
    with pytest.raises(DriverError, match="not created"):
        lite.workloads.create_workload("demo", "vm1", flavor="unit")
    assert count(lite, WorkloadRow) == count(lite, AllocationRow) == 0
    assert all(h.allocated["vcpu"] == 0 and h.workloads == 0 for h in lite.hosts.list_hosts())
    assert lite.events.list_events("demo")[0].kind == "workload.create_failed"
    assert lite.repair.check().ok
    assert lite.workloads.create_workload("demo", "vm1",
                                          flavor="unit").state == "running"  # the name is free again


def test_labels_pool_and_max_workloads(lite):
    small_cluster(lite)
    lite.catalog.create_pool("q")
    lite.hosts.create_host("solo", {"vcpu": 64, "memory_mib": 65536}, pool="q", labels={"ssd": "yes"},
                           max_workloads=1)
    assert lite.workloads.create_workload("demo", "a", flavor="unit",
                                          required_labels={"ssd": "yes"}).host == "solo"
    w = lite.workloads.create_workload("demo", "b", flavor="unit", forbidden_labels={"rack": "r0"})
    assert w.host in {"h1", "solo"} and w.host != "solo"  # solo is full (max_workloads=1)
    with pytest.raises(NoValidHostError, match="max-workloads"):
        lite.workloads.create_workload("demo", "c", flavor="unit", pool="q")
    assert lite.workloads.create_workload("demo", "d", flavor="unit", pool="p").host in {"h0", "h1", "h2"}


def test_groups_affinity_and_domain_spread(lite):
    small_cluster(lite)
    hosts = {lite.workloads.create_workload("demo", f"a{i}", flavor="unit", group="a",
                                            group_policy="affinity").host
             for i in range(3)}
    assert len(hosts) == 1
    placed = [lite.workloads.create_workload("demo", f"d{i}", flavor="unit", group="d",
                                             group_policy="domain-spread")
              for i in range(2)]
    domains = [lite.hosts.get_host(w.host).domain for w in placed]
    assert sorted(domains) == ["r0", "r1"]
    with pytest.raises(NoValidHostError, match="failure domain"):
        lite.workloads.create_workload("demo", "d2", flavor="unit", group="d")
    with pytest.raises(ConflictError, match="policy"):
        lite.workloads.create_workload("demo", "x", flavor="unit", group="a", group_policy="anti-affinity")
    assert lite.workloads.get_workload("demo", "a0").group == "a"


def test_lifecycle_actions(svc):
    small_cluster(svc)
    svc.workloads.create_workload("demo", "vm1", flavor="unit")
    assert svc.workloads.workload_action("demo", "vm1", "stop").state == "stopped"
    with pytest.raises(ConflictError):
        svc.workloads.workload_action("demo", "vm1", "suspend")
    assert svc.workloads.workload_action("demo", "vm1", "start").state == "running"
    assert svc.workloads.workload_action("demo", "vm1", "suspend").state == "suspended"
    assert svc.workloads.workload_action("demo", "vm1", "resume").state == "running"
    with pytest.raises(InvalidInputError):
        svc.workloads.workload_action("demo", "vm1", "explode")
    with pytest.raises(NotFoundError):
        svc.workloads.workload_action("demo", "nope", "stop")
    host = svc.workloads.get_workload("demo", "vm1").host
    svc.workloads.delete_workload("demo", "vm1")
    with pytest.raises(NotFoundError):
        svc.workloads.get_workload("demo", "vm1")
    assert svc.hosts.get_host(host).allocated["vcpu"] == 0
    assert count(svc, AllocationRow) == 0 and svc.repair.check().ok


def test_migrate(svc):
    small_cluster(svc)
    w = svc.workloads.create_workload("demo", "vm1", flavor="unit", required_labels={"rack": "r0"})
    m = svc.workloads.migrate_workload("demo", "vm1")
    assert m.host != w.host and svc.hosts.get_host(m.host).labels["rack"] == "r0"  # constraints kept
    assert svc.hosts.get_host(w.host).allocated["vcpu"] == 0
    assert svc.hosts.get_host(m.host).allocated["vcpu"] == 1
    with pytest.raises(ConflictError, match="already on"):
        svc.workloads.migrate_workload("demo", "vm1", host=m.host)
    with pytest.raises(NoValidHostError, match="labels"):
        svc.workloads.migrate_workload("demo", "vm1", host="h1")  # rack r1
    with pytest.raises(NotFoundError):
        svc.workloads.migrate_workload("demo", "vm1", host="nope")
    assert svc.workloads.migrate_workload("demo", "vm1", host=w.host).host == w.host
    assert svc.events.list_events("demo")[0].kind == "workload.migrated" and svc.repair.check().ok


def test_failed_migration_moves_back(lite):
    small_cluster(lite)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    lite.driver.inject("migrate")  # type: ignore[attr-defined]
    with pytest.raises(DriverError):
        lite.workloads.migrate_workload("demo", "vm1")
    assert lite.workloads.get_workload("demo", "vm1").host == w.host and lite.repair.check().ok


def test_fail_host_loses_its_workloads(svc):
    small_cluster(svc)
    w = svc.workloads.create_workload("demo", "vm1", flavor="unit")
    other = svc.workloads.create_workload("demo", "vm2", flavor="unit",
                                          forbidden_labels={"rack": svc.hosts.get_host(w.host)
                                                                                   .labels["rack"]})
    h = svc.sim.fail_host(w.host)
    assert h.state == "down" and h.allocated["vcpu"] == 0 and h.workloads == 0
    lost = svc.workloads.get_workload("demo", "vm1")
    assert (lost.state, lost.host) == ("lost", None)
    assert svc.workloads.get_workload("demo", "vm2").state == "running" and other.host != w.host
    assert not svc.driver.heartbeat(w.host) and svc.driver.heartbeat(other.host)
    kinds = [e.kind for e in svc.events.list_events()]
    assert "host.failed" in kinds and "workload.lost" in kinds
    assert svc.repair.check().ok
    # nothing lands on a down host; lost workloads cannot be acted on but can be deleted
    for i in range(3):
        assert svc.workloads.create_workload("demo", f"n{i}", flavor="unit").host != w.host
    with pytest.raises(ConflictError):
        svc.workloads.workload_action("demo", "vm1", "start")
    svc.workloads.delete_workload("demo", "vm1")
    svc.sim.revive_host(w.host)  # the sim host comes back (sim fault injection), empty and up
    assert svc.driver.heartbeat(w.host) and svc.hosts.get_host(w.host).state == "up"
    with pytest.raises(ConflictError, match="holds"):
        svc.hosts.delete_host(other.host)


def test_host_states(lite):
    small_cluster(lite, hosts=2)
    w = lite.workloads.create_workload("demo", "vm1", flavor="unit")
    lite.hosts.set_host_state(w.host, "maintenance")
    assert lite.workloads.get_workload("demo", "vm1").state == "running"  # maintenance keeps workloads
    assert lite.workloads.create_workload("demo", "vm2", flavor="unit").host != w.host
    lite.hosts.set_host_state(w.host, "fenced")
    assert lite.workloads.get_workload("demo", "vm1").state == "lost" and lite.repair.check().ok
    with pytest.raises(InvalidInputError):
        lite.hosts.set_host_state(w.host, "exploded")
    with pytest.raises(InvalidInputError):
        lite.hosts.set_host_state(w.host, "removed")
    with pytest.raises(NotFoundError):
        lite.hosts.set_host_state("nope", "up")


def test_incremental_refresh_does_not_rebuild(lite):
    small_cluster(lite)
    for i in range(5):
        lite.workloads.create_workload("demo", f"vm{i}", flavor="unit")
    loads = lite.cache.full_loads
    for i in range(5, 10):
        lite.workloads.create_workload("demo", f"vm{i}", flavor="unit")
    lite.hosts.create_host("late", {"vcpu": 64, "memory_mib": 65536})
    assert lite.workloads.create_workload("demo", "big", demand={"vcpu": 32}).host == "late"
    assert lite.cache.full_loads == loads  # only changed hosts were reloaded
    lite.workloads.delete_workload("demo", "big")
    lite.hosts.delete_host("late")
    assert lite.workloads.create_workload("demo", "after", flavor="unit").host != "late"
    assert lite.cache.full_loads == loads + 1


def test_failed_create_leaves_no_new_group(lite):
    from poolvisor.store.rows import GroupRow

    small_cluster(lite)
    with pytest.raises(NoValidHostError):
        lite.workloads.create_workload("demo", "big", demand={"vcpu": 99}, group="g", group_policy="affinity")
    lite.driver.inject("create")  # type: ignore[attr-defined]
    with pytest.raises(DriverError):
        lite.workloads.create_workload("demo", "vm", flavor="unit", group="g2", group_policy="affinity")
    assert count(lite, GroupRow) == 0 and count(lite, WorkloadRow) == 0
    # an empty group takes the policy of its next member; one with members keeps its own
    lite.workloads.create_workload("demo", "a", flavor="unit", group="g", group_policy="anti-affinity")
    lite.workloads.delete_workload("demo", "a")
    assert lite.workloads.create_workload("demo", "b", flavor="unit", group="g",
                                          group_policy="affinity").group == "g"
    with pytest.raises(ConflictError, match="policy"):
        lite.workloads.create_workload("demo", "c", flavor="unit", group="g", group_policy="anti-affinity")
