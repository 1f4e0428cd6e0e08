"""Pools, hosts, flavors, projects, tokens, events: behaviour and bad input (nothing half-written)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.store.rows import EventRow, HostResourceRow, HostRow


def count(svc, row):
    return svc.store.run(lambda s: s.scalar(select(func.count()).select_from(row)), write=False)


def test_pool_host_flavor_project_round_trip(svc):
    p = svc.create_pool("p1", "first pool")
    assert (p.name, p.description, p.hosts) == ("p1", "first pool", 0)
    h = svc.create_host("h1", {"vcpu": 8, "memory_mib": 16384}, pool="p1", overcommit={"vcpu": 2.0},
                        labels={"rack": "r1"}, domain="r1", max_workloads=10)
    assert h.pool == "p1" and h.state == "up" and h.capacity["vcpu"] == 8 and h.overcommit["vcpu"] == 2
    assert h.free["vcpu"] == 16 and h.allocated["vcpu"] == 0 and h.labels == {"rack": "r1"}
    assert (h.domain, h.max_workloads, h.workloads) == ("r1", 10, 0)
    pool = svc.get_pool("p1")
    assert pool.hosts == 1 and pool.capacity["vcpu"] == 16 and pool.free["memory_mib"] == 16384
    assert [x.name for x in svc.list_hosts(pool="p1")] == ["h1"] == [x.name for x in svc.list_hosts()]
    f = svc.create_flavor("small", {"vcpu": 1, "memory_mib": 2048})
    assert f.demand == {"vcpu": 1.0, "memory_mib": 2048.0} == svc.get_flavor("small").demand
    assert [x.name for x in svc.list_flavors()] == ["small"]
    assert svc.create_project("demo").workloads == 0
    assert [x.name for x in svc.list_projects()] == ["demo"] and svc.get_project("demo").name == "demo"
    kinds = [e.kind for e in svc.list_events()]
    assert kinds[:4] == ["project.created", "flavor.created", "host.created", "pool.created"]
    assert [e.kind for e in svc.list_events(project="demo")] == ["project.created"]
    svc.delete_flavor("small")
    with pytest.raises(NotFoundError):
        svc.get_flavor("small")


def test_duplicates_and_missing_references(svc):
    svc.create_pool("p")
    svc.create_host("h", {"vcpu": 1}, pool="p")
    svc.create_flavor("f", {"vcpu": 1})
    svc.create_project("demo")
    for call in (lambda: svc.create_pool("p"), lambda: svc.create_host("h", {"vcpu": 1}),
                 lambda: svc.create_flavor("f", {"vcpu": 1}), lambda: svc.create_project("demo")):
        with pytest.raises(ConflictError, match="already exists"):
            call()
    for call in (lambda: svc.get_pool("nope"), lambda: svc.get_host("nope"), lambda: svc.get_flavor("nope"),
                 lambda: svc.get_project("nope"), lambda: svc.create_host("h2", {"vcpu": 1}, pool="nope"),
                 lambda: svc.list_hosts(pool="nope"), lambda: svc.delete_pool("nope"),
                 lambda: svc.create_token("member", "nope"), lambda: svc.list_events(project="nope")):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(ConflictError, match="still has 1 hosts"):
        svc.delete_pool("p")
    svc.delete_host("h")
    svc.delete_pool("p")
    assert svc.list_pools() == []


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
        lite.create_host("h", capacity, overcommit=overcommit)
    assert count(lite, HostRow) == count(lite, HostResourceRow) == 0
    assert count(lite, EventRow) == before


@pytest.mark.parametrize("name", ["", "x" * 64, "bad name", "ünï", "a/b"])
def test_bad_names_rejected(lite, name):
    for call in (lambda: lite.create_pool(name), lambda: lite.create_project(name),
                 lambda: lite.create_flavor(name, {"vcpu": 1}), lambda: lite.create_host(name, {"vcpu": 1})):
        with pytest.raises(InvalidInputError):
            call()


def test_bad_labels_limits_and_events_limit(lite):
    with pytest.raises(InvalidInputError):
        lite.create_host("h", {"vcpu": 1}, labels={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError):
        lite.create_host("h", {"vcpu": 1}, max_workloads=-1)
    with pytest.raises(InvalidInputError):
        lite.create_pool("p", "x" * 5000)
    with pytest.raises(InvalidInputError):
        lite.list_events(limit=0)


def test_custom_resources_come_from_hosts(lite):
    with pytest.raises(InvalidInputError, match="unknown resource 'fpga'"):
        lite.create_flavor("accel", {"vcpu": 1, "fpga": 1})
    lite.create_host("h", {"vcpu": 4, "fpga": 2})
    assert lite.create_flavor("accel", {"vcpu": 1, "fpga": 1}).demand == {"vcpu": 1.0, "fpga": 1.0}
    with pytest.raises(InvalidInputError, match="at least one"):
        lite.create_flavor("zero", {"vcpu": 0})


def test_tokens(svc):
    first = svc.bootstrap_admin_token()
    assert first and svc.bootstrap_admin_token() is None
    admin = svc.authenticate(first)
    assert admin is not None and admin.role == "admin" and admin.project is None
    svc.create_project("demo")
    tok = svc.create_token("member", "demo")
    p = svc.authenticate(tok)
    assert p is not None and (p.role, p.project) == ("member", "demo")
    assert svc.authenticate("pv_wrong") is None and svc.authenticate("") is None
    assert svc.authenticate("x" * 10_000) is None
    with pytest.raises(InvalidInputError):
        svc.create_token("member")
    with pytest.raises(InvalidInputError):
        svc.create_token("root")  # type: ignore[arg-type]
    # only the digest is stored
    from poolvisor.store.rows import TokenRow

    digests = svc.store.run(lambda s: list(s.scalars(select(TokenRow.digest))), write=False)
    assert tok not in digests and len(digests) == 2


def test_seed_demo_only_on_empty_database(svc):
    svc.seed_demo(12)
    hosts = svc.list_hosts(pool="demo")
    assert len(hosts) == 12 and len({h.domain for h in hosts}) >= 2
    assert {f.name for f in svc.list_flavors()} == {"tiny", "small", "medium", "large", "xlarge"}
    assert svc.get_project("demo").name == "demo"
    svc.seed_demo(3)  # not empty any more: no-op
    assert len(svc.list_hosts()) == 12
    w = svc.create_workload("demo", "vm1", flavor="medium")
    assert w.state == "running" and w.host is not None
    with pytest.raises(InvalidInputError):
        svc.seed_demo(0)
