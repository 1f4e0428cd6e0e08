"""A small what-if pool shared by the what-if and utilization tests."""

from __future__ import annotations

from typing import Any


def fill_small_pool(svc: Any, hosts: int = 4, vms: int = 8) -> None:
    """Pool "p": `hosts` hosts of 8 vCPU / 16 GiB and `vms` "small" (2 vCPU) workloads of project demo."""
    svc.catalog.create_pool("p")
    for i in range(hosts):
        svc.hosts.create_host(f"h{i}", {"vcpu": 8, "memory_mib": 16384}, pool="p")
    svc.catalog.create_flavor("small", {"vcpu": 2, "memory_mib": 2048})
    svc.catalog.create_project("demo")
    for i in range(vms):
        svc.workloads.create_workload("demo", f"w{i}", flavor="small", pool="p")
