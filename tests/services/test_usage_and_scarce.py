"""Host and pool read models: measured use from the samples, stranded scarce capacity; and the
demo pool, whose GPUs must all stay usable after its 40 VMs are placed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from poolvisor.demo.cluster import seed_demo
from poolvisor.demo.usage import seed_demo_usage
from poolvisor.domain.errors import NotFoundError
from poolvisor.services import Services


def _host(svc: Services, name: str):  # type: ignore[no-untyped-def]
    return next(h for h in svc.hosts.list_hosts() if h.name == name)


def test_measured_use_is_the_latest_sample_times_the_vcpus(svc: Services) -> None:
    svc.catalog.create_pool("p")
    svc.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 16384}, pool="p", overcommit={"vcpu": 2})
    svc.hosts.create_host("h1", {"vcpu": 8, "memory_mib": 16384}, pool="p")
    svc.catalog.create_project("demo")
    for n, vcpu in (("a", 2), ("b", 4), ("c", 2)):
        svc.workloads.create_workload("demo", n, demand={"vcpu": vcpu, "memory_mib": 1024}, pool="p")
    on = {w.name: w.host for w in svc.workloads.list_workloads("demo")}
    assert len(set(on.values())) == 1  # best fit: all on one host
    busy, idle = on["a"], ({"h0", "h1"} - {on["a"]}).pop()
    h = _host(svc, busy)
    assert h.used is None and (h.measured_workloads, h.running_workloads) == (0, 3)  # unknown
    assert h.allocatable == {r: h.capacity[r] * h.overcommit[r] for r in h.capacity}
    # a: an older sample and the latest; b: two samples at the same latest instant (their mean)
    svc.utilization.record_utilization([("demo/a", 100, 0.9), ("demo/a", 200, 0.5),
                                        ("demo/b", 150, 0.2), ("demo/b", 150, 0.3)])
    h = _host(svc, busy)
    assert h.used == pytest.approx({"vcpu": 0.5 * 2 + 0.25 * 4})
    assert (h.measured_workloads, h.running_workloads) == (2, 3)  # a lower bound: c has no sample
    assert h.used_at == datetime.fromtimestamp(200, UTC)
    empty = _host(svc, idle)
    assert empty.used == {"vcpu": 0.0} and empty.running_workloads == 0 and empty.used_at is None
    svc.utilization.record_utilization([("demo/c", 300, 1.0)])
    svc.workloads.workload_action("demo", "b", "stop")  # a stopped workload uses no CPU
    h = _host(svc, busy)
    assert h.used == pytest.approx({"vcpu": 0.5 * 2 + 1.0 * 2})
    assert (h.measured_workloads, h.running_workloads) == (2, 2)
    (p,) = svc.catalog.list_pools()
    assert p.used == pytest.approx({"vcpu": 3.0}) and (p.measured_workloads, p.running_workloads) == (2, 2)
    assert p.used_at == datetime.fromtimestamp(300, UTC) and p.allocatable == p.capacity
    assert p.stranded == {"gpu": 0.0} and p.stranded_hosts == []  # gpu is scarce; none here


def test_recorded_says_which_workloads_have_samples(svc: Services) -> None:
    svc.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 16384})
    svc.catalog.create_project("demo")
    for n in ("a", "b"):
        svc.workloads.create_workload("demo", n, demand={"vcpu": 1})
    svc.utilization.record_utilization([("demo/b", 500, 0.5)])
    assert svc.utilization.recorded(["demo/a", "demo/b"]) == [False, True]
    assert svc.utilization.recorded(["demo/b"], until=499) == [False]
    assert svc.utilization.recorded([]) == []
    with pytest.raises(NotFoundError):
        svc.utilization.recorded(["demo/ghost"])


def test_pool_reports_gpus_stranded_behind_full_memory(svc: Services) -> None:
    svc.catalog.create_pool("p")
    svc.hosts.create_host("gpu0", {"vcpu": 16, "memory_mib": 16384, "gpu": 4}, pool="p")
    svc.hosts.create_host("gpu1", {"vcpu": 16, "memory_mib": 16384, "gpu": 2}, pool="p")
    svc.hosts.create_host("cpu0", {"vcpu": 16, "memory_mib": 4096}, pool="p")
    svc.catalog.create_flavor("tiny", {"vcpu": 1, "memory_mib": 512})
    svc.catalog.create_project("demo")
    # fits only on a GPU host (cpu0 is too small): placement must then use one, the fuller one
    big = svc.workloads.create_workload("demo", "big", demand={"vcpu": 2, "memory_mib": 16000}, pool="p")
    assert big.host in ("gpu0", "gpu1")
    small = svc.workloads.create_workload("demo", "small", demand={"vcpu": 1, "memory_mib": 1024}, pool="p")
    assert small.host == "cpu0"  # not onto the other GPU host
    (p,) = svc.catalog.list_pools()
    # no GPU flavor: the smallest GPU request is 1 gpu + the smallest flavor (512 MiB); 384 MiB left
    left = 4.0 if big.host == "gpu0" else 2.0
    assert p.stranded == {"gpu": left} and p.stranded_hosts == [big.host]
    # a GPU flavor that needs no more memory than is left: nothing stranded any more
    svc.catalog.create_flavor("gpu-mini", {"vcpu": 1, "memory_mib": 256, "gpu": 1})
    assert svc.catalog.get_pool("p").stranded == {"gpu": 0.0}
    svc.catalog.delete_flavor("gpu-mini")
    svc.hosts.set_host_state(big.host, "maintenance")  # takes nothing at all: not counted as stranded
    assert svc.catalog.get_pool("p").stranded == {"gpu": 0.0}


def test_demo_pool_leaves_every_gpu_usable(lite: Services) -> None:
    """`make run`: 20 hosts (4 with GPUs), 40 VMs placed as one batch; a gpu=1 request must still
    fit on each GPU host, and the pool reports nothing stranded."""
    seed_demo(lite, 20)
    assert seed_demo_usage(lite, 40) == 40
    gpu_hosts = [h for h in lite.hosts.list_hosts("demo") if h.capacity.get("gpu", 0) > 0]
    assert len(gpu_hosts) == 4
    ask = {"vcpu": 4, "memory_mib": 8192, "gpu": 1}
    for h in gpu_hosts:
        assert all(h.free[r] >= v for r, v in ask.items()), h
        assert h.workloads == 0  # ordinary VMs went to the other 16 hosts
    assert lite.catalog.get_pool("demo").stranded == {"gpu": 0.0}
    for i in range(4 * 4):  # every GPU of the pool can be handed out, one request each
        w = lite.workloads.create_workload("demo", f"gpu{i}", demand=ask, pool="demo")
        assert w.host in {h.name for h in gpu_hosts}
    assert all(h.free["gpu"] == 0 for h in lite.hosts.list_hosts("demo") if h.capacity.get("gpu"))
