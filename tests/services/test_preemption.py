"""Preemption through the create path: a higher class evicts the fewest lowest-class workloads of
one host, in one transaction with its claim; both sides record why; never over-allocated."""

from __future__ import annotations

import threading

import pytest

from poolvisor.domain.errors import InvalidInputError, NoValidHostError
from poolvisor.services import Services, open_services

UNIT = {"vcpu": 1, "memory_mib": 1024}


def full_pool(s: Services, classes: list[str], hosts: int = 2, slots: int = 2) -> None:
    """`hosts` hosts of `slots` units, filled with one workload per unit of the given classes."""
    s.catalog.create_pool("p")
    for i in range(hosts):
        s.hosts.create_host(f"h{i}", {"vcpu": slots, "memory_mib": slots * 1024}, pool="p")
    s.catalog.create_project("demo")
    for i, c in enumerate(classes):
        s.workloads.create_workload("demo", f"f{i}", demand=UNIT, priority_class=c)


def by_name(s: Services) -> dict:
    return {w.name: w for w in s.workloads.list_workloads("demo")}


def test_class_is_stored_and_validated(lite):
    full_pool(lite, ["spot"])
    assert by_name(lite)["f0"].priority_class == "spot"
    lite.workloads.create_workload("demo", "d", demand=UNIT)
    assert by_name(lite)["d"].priority_class == "normal"
    with pytest.raises(InvalidInputError):
        lite.workloads.create_workload("demo", "x", demand=UNIT, priority_class="urgent")


def test_high_evicts_one_spot_and_both_sides_record_why(svc):
    full_pool(svc, ["normal", "spot", "normal", "normal"])
    w = svc.workloads.create_workload("demo", "hi", demand=UNIT, priority_class="high")
    ws = by_name(svc)
    victim = ws["f1"]
    assert victim.state == "preempted" and victim.host is None
    assert victim.state_reason is not None and "demo/hi" in victim.state_reason
    assert w.state == "running" and w.host == "h0"
    assert w.explanation is not None
    assert w.explanation["preempted"] == [{"workload": "demo/f1", "class": "spot", "was": "running"}]
    assert "preemption" in w.explanation["rule"]
    assert all(ws[n].state == "running" for n in ("f0", "f2", "f3"))
    kinds = [(e.kind, e.subject) for e in svc.events.list_events("demo", limit=20)]
    assert ("workload.preempted", "workload/demo/f1") in kinds
    assert svc.repair.check().ok
    assert svc.quotas.usage("demo").used.get("workloads", 4) == 4  # the victim holds nothing
    svc.workloads.delete_workload("demo", "f1")  # a preempted workload can be deleted


def test_dry_run_shows_what_would_be_preempted_and_evicts_nothing(lite):
    full_pool(lite, ["normal", "spot", "normal", "normal"])
    w = lite.workloads.create_workload("demo", "hi", demand=UNIT, priority_class="high", dry_run=True)
    assert w.state == "dry-run" and w.host == "h0"
    assert [p["workload"] for p in w.explanation["preempted"]] == ["demo/f1"]
    assert by_name(lite)["f1"].state == "running" and "hi" not in by_name(lite)
    assert lite.repair.check().ok


def test_spot_first_then_low_never_equal(lite):
    full_pool(lite, ["low", "low", "spot", "normal"])
    w = lite.workloads.create_workload("demo", "a", demand=UNIT, priority_class="normal")
    assert w.explanation["preempted"][0]["class"] == "spot"
    w = lite.workloads.create_workload("demo", "b", demand=UNIT, priority_class="normal")
    assert w.explanation["preempted"][0]["class"] == "low"
    # now: low, normal, normal, normal: a normal request finds nothing it may evict... but one low
    lite.workloads.create_workload("demo", "c", demand=UNIT, priority_class="normal")
    with pytest.raises(NoValidHostError):  # only normal workloads left: never an equal class
        lite.workloads.create_workload("demo", "d", demand=UNIT, priority_class="normal")
    with pytest.raises(NoValidHostError):  # spot never preempts
        lite.workloads.create_workload("demo", "e", demand=UNIT, priority_class="spot")
    assert lite.repair.check().ok


def test_fewest_victims_on_one_host(lite):
    lite.catalog.create_pool("p")
    lite.hosts.create_host("h0", {"vcpu": 4, "memory_mib": 4096}, pool="p")
    lite.hosts.create_host("h1", {"vcpu": 4, "memory_mib": 4096}, pool="p")
    lite.catalog.create_project("demo")
    for i in range(4):  # h0 (best fit fills it first): four small spots
        lite.workloads.create_workload("demo", f"s{i}", demand=UNIT, priority_class="spot")
    lite.workloads.create_workload("demo", "big", demand={"vcpu": 3, "memory_mib": 3072},
                                   priority_class="spot")
    lite.workloads.create_workload("demo", "n", demand=UNIT)
    w = lite.workloads.create_workload("demo", "hi", demand={"vcpu": 3, "memory_mib": 3072},
                                       priority_class="system")
    assert [p["workload"] for p in w.explanation["preempted"]] == ["demo/big"]
    assert w.host == by_name(lite)["n"].host


def test_labels_still_apply(lite):
    lite.catalog.create_pool("p")
    lite.hosts.create_host("h0", {"vcpu": 1, "memory_mib": 1024}, pool="p", labels={"ssd": "yes"})
    lite.hosts.create_host("h1", {"vcpu": 1, "memory_mib": 1024}, pool="p")
    lite.catalog.create_project("demo")
    lite.workloads.create_workload("demo", "s0", demand=UNIT, priority_class="spot",
                                   required_labels={"ssd": "yes"})
    lite.workloads.create_workload("demo", "n1", demand=UNIT)
    w = lite.workloads.create_workload("demo", "hi", demand=UNIT, priority_class="high",
                                       forbidden_labels={"ssd": "yes"})
    # the spot on h0 would be evicted first, but h0 is forbidden: the normal one on h1 goes
    assert w.host == "h1" and w.priority_class == "high"
    assert [p["workload"] for p in w.explanation["preempted"]] == ["demo/n1"]
    assert by_name(lite)["s0"].state == "running"


def test_concurrent_preemptions_never_over_allocate(svc, db_url):
    """12 threads, through two Services (two placement caches: two replicas, so the generation
    guard and the victims' state checks decide the races, not one process's lock) ask for 8
    slots held by spot workloads: exactly 8 win, each evicting one spot."""
    full_pool(svc, ["spot"] * 8, hosts=2, slots=4)
    other = open_services(db_url)
    won, lost, errors = [], [], []

    def one(i: int) -> None:
        s = svc if i % 2 else other
        try:
            s.workloads.create_workload("demo", f"hi{i}", demand=UNIT, priority_class="high")
            won.append(i)
        except NoValidHostError:
            lost.append(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    assert len(won) == 8 and len(lost) == 4
    ws = by_name(svc)
    assert sum(w.state == "preempted" for w in ws.values()) == 8
    assert sum(w.state == "running" for w in ws.values()) == 8
    for h in svc.hosts.list_hosts():
        assert h.allocated["vcpu"] <= h.capacity["vcpu"] and h.workloads == 4
    report = svc.repair.check()
    assert report.ok, report.violations
