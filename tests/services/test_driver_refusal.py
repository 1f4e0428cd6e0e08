"""A driver's refusal (DriverRefusal: the workload cannot be moved as it is) is a 409 with the
driver's reason, at submission when the driver says so up front, and after the allocation moved
(start_migration) the move is undone: the workload stays where it was, nothing is lost."""

from __future__ import annotations

import pytest
from svc_helpers import small_cluster

from poolvisor.drivers.base import DriverRefusal, DriverWorkload
from poolvisor.drivers.protocols import HostBinding
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services


def _refuse(*_a: object, **_k: object) -> None:
    raise DriverRefusal("workload demo/vm has snapshots (s1); delete them first")


def test_refusal_up_front_is_a_409_and_queues_nothing(lite: Services, monkeypatch) -> None:
    small_cluster(lite)
    lite.workloads.create_workload("demo", "vm", flavor="unit")
    host = lite.workloads.get_workload("demo", "vm").host
    d = lite.drivers.driver_of(host)
    assert isinstance(d, SimDriver)
    monkeypatch.setattr(d, "check_migration", _refuse)
    with pytest.raises(DriverRefusal, match="has snapshots") as e:
        lite.workloads.submit_migrate("demo", "vm")
    assert e.value.status_code == 409 and e.value.code == "refused_by_driver"
    with pytest.raises(DriverRefusal):
        lite.workloads.migrate_workload("demo", "vm")
    assert lite.tasks.list_tasks() == [] or all(t.kind != "migrate" or t.state == "failed"
                                                for t in lite.tasks.list_tasks())
    w = lite.workloads.get_workload("demo", "vm")
    assert (w.host, w.state) == (host, "running")


def test_refusal_after_the_claim_moves_the_workload_back(lite: Services, monkeypatch) -> None:
    small_cluster(lite)
    lite.workloads.create_workload("demo", "vm", flavor="unit")
    host = lite.workloads.get_workload("demo", "vm").host
    d = lite.drivers.driver_of(host)
    assert isinstance(d, SimDriver)

    def start(workload: DriverWorkload, src: HostBinding, dst: HostBinding, live: bool = True) -> None:
        raise DriverRefusal(f"hosts {src.name!r} and {dst.name!r} are the same node")

    monkeypatch.setattr(d, "start_migration", start)
    with pytest.raises(DriverRefusal, match="same node"):
        lite.workloads.migrate_workload("demo", "vm")
    w = lite.workloads.get_workload("demo", "vm")
    assert (w.host, w.state) == (host, "running")
    assert lite.repair.check().ok, lite.repair.check().violations


def test_a_refused_create_is_a_409_and_leaves_no_allocation(lite: Services, monkeypatch) -> None:
    small_cluster(lite)
    for h in ("h0", "h1", "h2"):
        d = lite.drivers.driver_of(h)
        assert isinstance(d, SimDriver)
        monkeypatch.setattr(d, "create", lambda host, w: _refuse())
    with pytest.raises(DriverRefusal, match="not created: .*snapshots"):
        lite.workloads.create_workload("demo", "vm", flavor="unit")
    with pytest.raises(DriverRefusal, match="batch not created"):
        lite.batch.create_workloads_batch("demo", [{"name": "b1", "flavor": "unit"}])
    assert lite.workloads.list_workloads("demo") == []
    assert lite.repair.check().ok, lite.repair.check().violations
