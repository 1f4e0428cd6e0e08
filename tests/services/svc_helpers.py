"""Helpers shared by the services tests (a unique module name: importable next to the tests)."""

from __future__ import annotations

from poolvisor.services import Services


def small_cluster(s: Services, hosts: int = 3, vcpu: float = 4, memory: float = 4096) -> None:
    s.catalog.create_pool("p")
    for i in range(hosts):
        s.hosts.create_host(f"h{i}", {"vcpu": vcpu, "memory_mib": memory}, pool="p",
                            labels={"rack": f"r{i % 2}"}, domain=f"r{i % 2}")
    s.catalog.create_flavor("unit", {"vcpu": 1, "memory_mib": 1024})
    s.catalog.create_project("demo")
