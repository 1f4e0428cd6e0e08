"""A demo cluster for `poolvisor serve --demo N`: pool 'demo', N sim hosts in racks, a flavor catalogue.

Seeded through the public use cases (catalog and hosts), so the demo is exactly what an operator
would build by hand, with the same validation and events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolvisor.domain.errors import ConflictError, InvalidInputError

if TYPE_CHECKING:
    from poolvisor.services.facade import Services

MAX_DEMO_HOSTS = 100_000
HOSTS_PER_RACK = 10
FLAVORS = {
    "tiny": {"vcpu": 1, "memory_mib": 512, "disk_gib": 1, "net_mbps": 10},
    "small": {"vcpu": 1, "memory_mib": 2048, "disk_gib": 20, "net_mbps": 100},
    "medium": {"vcpu": 2, "memory_mib": 4096, "disk_gib": 40, "net_mbps": 200},
    "large": {"vcpu": 4, "memory_mib": 8192, "disk_gib": 80, "net_mbps": 500},
    "xlarge": {"vcpu": 8, "memory_mib": 16384, "disk_gib": 160, "net_mbps": 1000},
}
HOST_CAPACITY = {"vcpu": 32, "memory_mib": 131072, "disk_gib": 2000, "net_mbps": 10000, "gpu": 0}
GPU_HOST_EVERY = 5  # every 5th host carries 4 GPUs and the label gpu=true
VCPU_OVERCOMMIT = 2.0


def seed_demo(svc: Services, n_hosts: int) -> bool:
    """Only when the database has no pools, flavors, projects or hosts; otherwise a no-op (False).
    A concurrent seeder that created the pool first wins (ConflictError here: nothing is added)."""
    if isinstance(n_hosts, bool) or not isinstance(n_hosts, int) or not 1 <= n_hosts <= MAX_DEMO_HOSTS:
        raise InvalidInputError(f"demo host count must be 1..{MAX_DEMO_HOSTS}")
    if svc.catalog.list_pools() or svc.catalog.list_flavors() or svc.catalog.list_projects() \
            or svc.hosts.list_hosts():
        return False
    racks = max(2, -(-n_hosts // HOSTS_PER_RACK))
    try:
        svc.catalog.create_pool("demo", f"demo pool of {n_hosts} sim hosts in {racks} racks")
    except ConflictError:
        return False
    for name, demand in FLAVORS.items():
        svc.catalog.create_flavor(name, {k: float(v) for k, v in demand.items()})
    for i in range(n_hosts):
        rack = f"rack-{i % racks}"
        gpu = i % GPU_HOST_EVERY == GPU_HOST_EVERY - 1
        cap = {k: float(v) for k, v in HOST_CAPACITY.items()} | {"gpu": 4.0 if gpu else 0.0}
        svc.hosts.create_host(f"demo-{i:03d}", cap, pool="demo", overcommit={"vcpu": VCPU_OVERCOMMIT},
                              labels={"rack": rack, "gpu": "true" if gpu else "false"}, domain=rack)
    svc.catalog.create_project("demo")
    return True
