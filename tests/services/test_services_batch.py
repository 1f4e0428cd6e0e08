"""Batch placement and consolidation planning in the live pool (services layer)."""

from __future__ import annotations

import pytest

from poolvisor.domain.errors import InvalidInputError, NoValidHostError
from poolvisor.services import Services, open_services


def fragmented(s: Services, hosts: int = 6) -> None:
    """Hosts of 8 vCPU; one 1-vCPU workload pinned on each of the first half (fragmented pool)."""
    s.catalog.create_pool("p")
    for i in range(hosts):
        s.hosts.create_host(f"h{i}", {"vcpu": 8, "memory_mib": 8192}, pool="p")
    s.catalog.create_flavor("one", {"vcpu": 1, "memory_mib": 1024})
    s.catalog.create_flavor("big", {"vcpu": 3, "memory_mib": 3072})
    s.catalog.create_project("demo")
    for i in range(hosts // 2):
        w = s.workloads.create_workload("demo", f"old{i}", flavor="one")
        if w.host != f"h{i}":
            s.workloads.migrate_workload("demo", f"old{i}", f"h{i}")


def active_hosts(s: Services) -> int:
    return sum(1 for h in s.hosts.list_hosts() if h.workloads > 0)


SPECS = [{"name": f"web{i}", "flavor": "big"} for i in range(6)]


def test_batch_uses_no_more_hosts_than_sequential(tmp_path) -> None:
    with open_services(f"sqlite:///{tmp_path / 'seq.db'}") as seq, \
            open_services(f"sqlite:///{tmp_path / 'bat.db'}") as bat:
        fragmented(seq)
        fragmented(bat)
        for sp in SPECS:
            seq.workloads.create_workload("demo", sp["name"], flavor=sp["flavor"])
        res = bat.batch.create_workloads_batch("demo", SPECS)
        assert [w.state for w in res.workloads] == ["running"] * 6
        assert all(w.explanation and "batch placement" in w.explanation["rule"] for w in res.workloads)
        assert res.plan["kind"] == "batch-placement" and res.unplaced == []
        assert active_hosts(bat) <= active_hosts(seq)
        assert active_hosts(bat) == 3  # 6 x 3 vCPU onto 3 hosts with 7 vCPU free each: 2 per host
        assert bat.repair.check().ok, bat.repair.check().violations


def test_batch_all_or_nothing_writes_nothing(lite: Services) -> None:
    fragmented(lite, hosts=2)
    before = {h.name: h.generation for h in lite.hosts.list_hosts()}
    specs = [{"name": f"w{i}", "flavor": "big"} for i in range(6)]  # 18 vCPU > 14 free
    with pytest.raises(NoValidHostError) as e:
        lite.batch.create_workloads_batch("demo", specs)
    assert e.value.detail["kind"] == "batch-placement"
    assert {w.name for w in lite.workloads.list_workloads("demo")} == {"old0"}
    assert {h.name: h.generation for h in lite.hosts.list_hosts()} == before
    # not all-or-nothing: what fits is created, the rest reported
    res = lite.batch.create_workloads_batch("demo", specs, all_or_nothing=False)
    assert len(res.workloads) == 4 and len(res.unplaced) == 2
    assert lite.repair.check().ok


def test_batch_dry_run_and_rejections(lite: Services) -> None:
    fragmented(lite, hosts=2)
    res = lite.batch.create_workloads_batch("demo", SPECS[:2], dry_run=True)
    assert [w.state for w in res.workloads] == ["dry-run", "dry-run"]
    assert [w.name for w in lite.workloads.list_workloads("demo")] == ["old0"]
    with pytest.raises(InvalidInputError, match="unknown field"):
        lite.batch.create_workloads_batch("demo", [{"name": "x", "flavor": "one", "zone": "z"}])
    with pytest.raises(InvalidInputError, match="unique"):
        lite.batch.create_workloads_batch("demo", [{"name": "x", "flavor": "one"}] * 2)


def test_consolidation_plan_and_apply(lite: Services) -> None:
    fragmented(lite, hosts=6)  # 3 hosts each holding one 1-vCPU workload
    lite.catalog.create_pool("q")  # another pool's active host is neither counted nor used
    lite.hosts.create_host("q0", {"vcpu": 64, "memory_mib": 65536}, pool="q")
    lite.workloads.create_workload("demo", "elsewhere", flavor="one", pool="q")
    res = lite.batch.plan_consolidation("p")
    assert all(m["to"] != "q0" for m in res.plan["moves"])
    assert res.plan["hosts_before"] == 3 and res.plan["hosts_after"] == 1
    assert len(res.hosts_emptied) == 2 and len(res.plan["moves"]) == 2
    assert active_hosts(lite) == 4  # only planned
    done = lite.batch.plan_consolidation("p", apply=True)
    assert done.applied and len(done.executed) == 2 and done.failed == []
    assert active_hosts(lite) == 2
    report = lite.repair.check()
    assert report.ok, report.violations
    capped = lite.batch.plan_consolidation("p", max_migrations=0)
    assert capped.plan["moves"] == []


def test_batch_mixed_sizes_never_worse_than_sequential(tmp_path) -> None:
    """Mixed sizes on a fragmented pool, where the packer alone opens one host too many: the
    service keeps whichever of packer and pipeline replay uses fewer hosts."""
    def setup(s: Services) -> list[dict[str, str]]:
        s.catalog.create_pool("p")
        for i in range(12):
            s.hosts.create_host(f"h{i:02d}", {"vcpu": 16, "memory_mib": 65536}, pool="p")
        s.catalog.create_flavor("one", {"vcpu": 1, "memory_mib": 2048})
        for v in (9, 7, 5, 3):
            s.catalog.create_flavor(f"f{v}", {"vcpu": v, "memory_mib": 1024 * v})
        s.catalog.create_project("demo")
        for i in range(6):
            w = s.workloads.create_workload("demo", f"old{i}", flavor="one")
            if w.host != f"h{i:02d}":
                s.workloads.migrate_workload("demo", f"old{i}", f"h{i:02d}")
        return [{"name": f"web{i}", "flavor": f"f{(9, 7, 5, 3)[i % 4]}"} for i in range(16)]

    with open_services(f"sqlite:///{tmp_path / 'seq.db'}") as seq, \
            open_services(f"sqlite:///{tmp_path / 'bat.db'}") as bat:
        specs = setup(seq)
        setup(bat)
        for sp in specs:
            seq.workloads.create_workload("demo", sp["name"], flavor=sp["flavor"])
        res = bat.batch.create_workloads_batch("demo", specs)
        assert len(res.workloads) == 16
        assert active_hosts(bat) <= active_hosts(seq)
        assert res.plan["hosts_after"] == active_hosts(bat) >= res.plan["lower_bound"]
        assert bat.repair.check().ok
