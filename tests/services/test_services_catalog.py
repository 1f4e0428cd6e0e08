"""Pools, hosts, flavors, projects, tokens, events: behaviour and bad input (nothing half-written)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from poolvisor.demo.cluster import seed_demo
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.store.rows import EventRow, HostResourceRow, HostRow


def count(svc, row):
    return svc.store.run(lambda s: s.scalar(select(func.count()).select_from(row)), write=False)


def test_pool_host_flavor_project_round_trip(svc):
    p = svc.catalog.create_pool("p1", "first pool")
    assert (p.name, p.description, p.hosts) == ("p1", "first pool", 0)
    h = svc.hosts.create_host("h1", {"vcpu": 8, "memory_mib": 16384}, pool="p1", overcommit={"vcpu": 2.0},
                              labels={"rack": "r1"}, domain="r1", max_workloads=10)
    assert h.pool == "p1" and h.state == "up" and h.capacity["vcpu"] == 8 and h.overcommit["vcpu"] == 2
    assert h.free["vcpu"] == 16 and h.allocated["vcpu"] == 0 and h.labels == {"rack": "r1"}
    assert (h.domain, h.max_workloads, h.workloads) == ("r1", 10, 0)
    pool = svc.catalog.get_pool("p1")
    assert pool.hosts == 1 and pool.capacity["vcpu"] == 16 and pool.free["memory_mib"] == 16384
    assert [x.name for x in svc.hosts.list_hosts(pool="p1")] == ["h1"] == \
        [x.name for x in svc.hosts.list_hosts()]
    f = svc.catalog.create_flavor("small", {"vcpu": 1, "memory_mib": 2048})
    assert f.demand == {"vcpu": 1.0, "memory_mib": 2048.0} == svc.catalog.get_flavor("small").demand
    assert [x.name for x in svc.catalog.list_flavors()] == ["small"]
    assert svc.catalog.create_project("demo").workloads == 0
    assert [x.name for x in svc.catalog.list_projects()] == ["demo"]
    assert svc.catalog.get_project("demo").name == "demo"
    kinds = [e.kind for e in svc.events.list_events()]
    assert kinds[:4] == ["project.created", "flavor.created", "host.created", "pool.created"]
    assert [e.kind for e in svc.events.list_events(project="demo")] == ["project.created"]
    svc.catalog.delete_flavor("small")
    with pytest.raises(NotFoundError):
        svc.catalog.get_flavor("small")


def test_duplicates_and_missing_references(svc):
    svc.catalog.create_pool("p")
    svc.hosts.create_host("h", {"vcpu": 1}, pool="p")
    svc.catalog.create_flavor("f", {"vcpu": 1})
    svc.catalog.create_project("demo")
    for call in (lambda: svc.catalog.create_pool("p"), lambda: svc.hosts.create_host("h", {"vcpu": 1}),
                 lambda: svc.catalog.create_flavor("f",
                                                   {"vcpu": 1}), lambda: svc.catalog.create_project("demo")):
        with pytest.raises(ConflictError, match="already exists"):
            call()
    for call in (lambda: svc.catalog.get_pool("nope"), lambda: svc.hosts.get_host("nope"),
                 lambda: svc.catalog.get_flavor("nope"),
                 lambda: svc.catalog.get_project("nope"),
                 lambda: svc.hosts.create_host("h2", {"vcpu": 1}, pool="nope"),
                 lambda: svc.hosts.list_hosts(pool="nope"), lambda: svc.catalog.delete_pool("nope"),
                 lambda: svc.auth.create_token("member",
                                               "nope"), lambda: svc.events.list_events(project="nope")):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(ConflictError, match="still has 1 hosts"):
        svc.catalog.delete_pool("p")
    svc.hosts.delete_host("h")
    svc.catalog.delete_pool("p")
    assert svc.catalog.list_pools() == []


@pytest.mark.parametrize("capacity,overcommit,message", [
    ({"vcpu": -1}, None, ">= 0"),
    ({"vcpu": float("nan")}, None, "finite"),
    ({"vcpu": 1e16}, None, "exceeds"),
    ({"vcpu": "8"}, None, "number"),
    ({"vcpu": 0}, None, "positive"),
    ({}, None, "non-empty"),
    ({"Bad-Name": 1}, None, "invalid resource name"),
    ({"vcpu": 4}, {"vcpu": 0}, "overcommit"),
    ({"vcpu": 4}, {"fpga": 2}, "does not declare"),
])
def test_bad_host_input_writes_nothing(lite, capacity, overcommit, message):
    before = count(lite, EventRow)
    with pytest.raises(InvalidInputError, match=message):
        lite.hosts.create_host("h", capacity, overcommit=overcommit)
    assert count(lite, HostRow) == count(lite, HostResourceRow) == 0
    assert count(lite, EventRow) == before


@pytest.mark.parametrize("name", ["", "x" * 64, "bad name", "ünï", "a/b"])
def test_bad_names_rejected(lite, name):
    for call in (lambda: lite.catalog.create_pool(name), lambda: lite.catalog.create_project(name),
                 lambda: lite.catalog.create_flavor(name, {"vcpu": 1}),
                 lambda: lite.hosts.create_host(name, {"vcpu": 1})):
        with pytest.raises(InvalidInputError):
            call()


def test_bad_labels_limits_and_events_limit(lite):
    with pytest.raises(InvalidInputError):
        lite.hosts.create_host("h", {"vcpu": 1}, labels={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError):
        lite.hosts.create_host("h", {"vcpu": 1}, max_workloads=-1)
    with pytest.raises(InvalidInputError):
        lite.catalog.create_pool("p", "x" * 5000)
    with pytest.raises(InvalidInputError):
        lite.events.list_events(limit=0)


def test_custom_resources_come_from_hosts(lite):
    with pytest.raises(InvalidInputError, match="unknown resource 'fpga'"):
        lite.catalog.create_flavor("accel", {"vcpu": 1, "fpga": 1})
    lite.hosts.create_host("h", {"vcpu": 4, "fpga": 2})
    assert lite.catalog.create_flavor("accel", {"vcpu": 1, "fpga": 1}).demand == {"vcpu": 1.0, "fpga": 1.0}
    with pytest.raises(InvalidInputError, match="at least one"):
        lite.catalog.create_flavor("zero", {"vcpu": 0})


def test_tokens(svc):
    first = svc.auth.bootstrap_admin_token()
    assert first and svc.auth.bootstrap_admin_token() is None
    admin = svc.auth.authenticate(first)
    assert admin is not None and admin.role == "admin" and admin.project is None
    svc.catalog.create_project("demo")
    tok = svc.auth.create_token("member", "demo")
    p = svc.auth.authenticate(tok)
    assert p is not None and (p.role, p.project) == ("member", "demo")
    assert svc.auth.authenticate("pv_wrong") is None and svc.auth.authenticate("") is None
    assert svc.auth.authenticate("x" * 10_000) is None
    with pytest.raises(InvalidInputError):
        svc.auth.create_token("member")
    with pytest.raises(InvalidInputError):
        svc.auth.create_token("root")  # type: ignore[arg-type]
    # only the digest is stored
    from poolvisor.store.rows import TokenRow

    digests = svc.store.run(lambda s: list(s.scalars(select(TokenRow.digest))), write=False)
    assert tok not in digests and len(digests) == 2


def test_seed_demo_only_on_empty_database(svc):
    seed_demo(svc, 12)
    hosts = svc.hosts.list_hosts(pool="demo")
    assert len(hosts) == 12 and len({h.domain for h in hosts}) >= 2
    assert {f.name for f in svc.catalog.list_flavors()} == {"tiny", "small", "medium", "large", "xlarge"}
    assert svc.catalog.get_project("demo").name == "demo"
    seed_demo(svc, 3)  # not empty any more: no-op
    assert len(svc.hosts.list_hosts()) == 12
    w = svc.workloads.create_workload("demo", "vm1", flavor="medium")
    assert w.state == "running" and w.host is not None
    with pytest.raises(InvalidInputError):
        seed_demo(svc, 0)
