"""Batch (gang) placement with labels and affinity: all-or-nothing, through the placement filters
(the same rule as single creates), hard-affinity groups on one host, anti-affinity and domain
spread between the batch's own members and the group's existing ones."""

from __future__ import annotations

import threading

import pytest

from poolvisor.domain.errors import ConflictError, InvalidInputError, NoValidHostError
from poolvisor.services import Services

ONE = {"vcpu": 1, "memory_mib": 1024}


def pool(s: Services, hosts: int = 4, vcpu: float = 4) -> None:
    s.catalog.create_pool("p")
    for i in range(hosts):
        s.hosts.create_host(f"h{i}", {"vcpu": vcpu, "memory_mib": vcpu * 1024}, pool="p",
                            labels={"ssd": "yes" if i % 2 == 0 else "no"}, domain=f"r{i // 2}")
    s.catalog.create_project("demo")


def hosts_of(s: Services) -> dict[str, str | None]:
    return {w.name: w.host for w in s.workloads.list_workloads("demo")}


def test_labels_are_honoured(lite):
    pool(lite)
    res = lite.batch.create_workloads_batch("demo", [
        {"name": f"a{i}", "demand": ONE, "required_labels": {"ssd": "yes"}} for i in range(5)] + [
        {"name": "b", "demand": ONE, "forbidden_labels": {"ssd": "yes"}}])
    got = {w.name: w.host for w in res.workloads}
    assert all(got[f"a{i}"] in ("h0", "h2") for i in range(5))
    assert got["b"] in ("h1", "h3")
    assert lite.repair.check().ok


def test_all_or_nothing_with_labels(lite):
    pool(lite)  # ssd hosts: 2 x 4 vcpu = 8
    with pytest.raises(NoValidHostError):
        lite.batch.create_workloads_batch("demo", [
            {"name": f"a{i}", "demand": ONE, "required_labels": {"ssd": "yes"}} for i in range(9)])
    assert hosts_of(lite) == {}
    with pytest.raises(NoValidHostError):  # no host has both values
        lite.batch.create_workloads_batch("demo", [
            {"name": "x", "demand": ONE, "group": "g", "group_policy": "affinity",
             "required_labels": {"ssd": "yes"}},
            {"name": "y", "demand": ONE, "group": "g", "required_labels": {"ssd": "no"}}])
    assert hosts_of(lite) == {}


def test_affinity_group_is_placed_on_one_host_as_a_unit(lite):
    pool(lite)
    lite.workloads.create_workload("demo", "filler", demand={"vcpu": 2, "memory_mib": 2048})
    # one by one, the best fit would put the first member next to the filler (2 free), then the
    # others could not follow; as a unit the group of 4 goes to an empty host
    res = lite.batch.create_workloads_batch("demo", [
        {"name": f"g{i}", "demand": ONE, "group": "web", "group_policy": "affinity"} for i in range(4)])
    assert len({w.host for w in res.workloads}) == 1
    assert {w.group for w in res.workloads} == {"web"}
    # the group is stored with its policy: a later member must join them, and their host is full
    with pytest.raises(NoValidHostError, match="affinity"):
        lite.workloads.create_workload("demo", "late", demand=ONE, group="web")
    assert lite.repair.check().ok


def test_anti_affinity_and_domain_spread_between_members(lite):
    pool(lite)
    res = lite.batch.create_workloads_batch("demo", [
        {"name": f"s{i}", "demand": ONE, "group": "spread", "group_policy": "anti-affinity"}
        for i in range(4)])
    assert len({w.host for w in res.workloads}) == 4
    with pytest.raises(NoValidHostError):  # a fifth member has no host left
        lite.batch.create_workloads_batch("demo", [{"name": "s4", "demand": ONE, "group": "spread"}])
    res = lite.batch.create_workloads_batch("demo", [
        {"name": f"d{i}", "demand": ONE, "group": "dom", "group_policy": "domain-spread"} for i in range(2)])
    doms = {"h0": "r0", "h1": "r0", "h2": "r1", "h3": "r1"}
    assert {doms[w.host] for w in res.workloads} == {"r0", "r1"}
    assert lite.repair.check().ok


def test_group_rules(lite):
    pool(lite)
    with pytest.raises(InvalidInputError, match="two policies"):
        lite.batch.create_workloads_batch("demo", [
            {"name": "a", "demand": ONE, "group": "g", "group_policy": "affinity"},
            {"name": "b", "demand": ONE, "group": "g", "group_policy": "anti-affinity"}])
    with pytest.raises(InvalidInputError, match="needs a group"):
        lite.batch.create_workloads_batch("demo", [{"name": "a", "demand": ONE, "group_policy": "affinity"}])
    lite.workloads.create_workload("demo", "m", demand=ONE, group="g", group_policy="affinity")
    with pytest.raises(ConflictError, match="has policy affinity"):
        lite.batch.create_workloads_batch("demo", [
            {"name": "a", "demand": ONE, "group": "g", "group_policy": "anti-affinity"}])


def test_dry_run_plans_groups_without_writing(lite):
    pool(lite)
    res = lite.batch.create_workloads_batch("demo", [
        {"name": f"g{i}", "demand": ONE, "group": "web", "group_policy": "affinity"} for i in range(3)],
        dry_run=True)
    assert {w.state for w in res.workloads} == {"dry-run"} and len({w.host for w in res.workloads}) == 1
    assert hosts_of(lite) == {}


def test_concurrent_anti_affinity_batches_never_share_a_host(svc):
    """Two threads each place 2 members of one anti-affinity group on 4 hosts, alongside singles:
    the group lock and re-verification keep the 4 members on 4 hosts."""
    pool(svc)
    errors: list[str] = []

    def batch(tag: str) -> None:
        try:
            svc.batch.create_workloads_batch("demo", [
                {"name": f"{tag}{i}", "demand": ONE, "group": "aa", "group_policy": "anti-affinity"}
                for i in range(2)])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    def single(i: int) -> None:
        try:
            svc.workloads.create_workload("demo", f"one{i}", demand=ONE, group="aa",
                                          group_policy="anti-affinity")
        except NoValidHostError:
            pass
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=batch, args=(t,)) for t in "xy"]
    ts += [threading.Thread(target=single, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    placed = [h for h in hosts_of(svc).values() if h is not None]
    assert len(placed) == len(set(placed)) and len(placed) <= 4
    assert all("NoValidHost" in e for e in errors), errors
    assert svc.repair.check().ok
