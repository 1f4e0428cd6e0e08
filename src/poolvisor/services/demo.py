"""A demo cluster for `poolvisor serve --demo N`: pool 'demo', N sim hosts in racks, a flavor catalogue."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.resources import DEFAULT_RESOURCES
from poolvisor.drivers.protocols import HostBinding
from poolvisor.services.base import ServiceBase
from poolvisor.store.rows import FlavorRow, HostResourceRow, HostRow, PoolRow, ProjectRow

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


class DemoServices(ServiceBase):
    def seed_demo(self, n_hosts: int) -> None:
        """Only when the database has no pools, hosts, flavors or projects; otherwise a no-op."""
        if isinstance(n_hosts, bool) or not isinstance(n_hosts, int) or not 1 <= n_hosts <= MAX_DEMO_HOSTS:
            raise InvalidInputError(f"demo host count must be 1..{MAX_DEMO_HOSTS}")
        racks = max(2, -(-n_hosts // HOSTS_PER_RACK))

        def tx(s: Session) -> list[tuple[str, dict[str, float]]]:
            for row in (PoolRow, HostRow, FlavorRow, ProjectRow):
                if s.scalar(select(func.count()).select_from(row)):
                    return []
            pool = PoolRow(name="demo", description=f"demo pool of {n_hosts} sim hosts in {racks} racks")
            s.add(pool)
            s.flush()
            made = []
            for i in range(n_hosts):
                rack = f"rack-{i % racks}"
                gpu = i % GPU_HOST_EVERY == GPU_HOST_EVERY - 1
                labels = {"rack": rack, "gpu": "true" if gpu else "false"}
                h = HostRow(name=f"demo-{i:03d}", pool_id=pool.id, state="up", labels=labels, domain=rack,
                            max_workloads=0, workloads=0, generation=0)
                s.add(h)
                s.flush()
                cap = {**HOST_CAPACITY, "gpu": 4.0 if gpu else 0.0}
                for r in DEFAULT_RESOURCES:
                    s.add(HostResourceRow(host_id=h.id, resource=r, capacity=float(cap[r]),
                                          overcommit=VCPU_OVERCOMMIT if r == "vcpu" else 1.0, allocated=0.0))
                made.append((h.name, {k: float(v) for k, v in cap.items()}))
            for name, demand in FLAVORS.items():
                s.add(FlavorRow(name=name, demand={k: float(v) for k, v in demand.items()}))
            s.add(ProjectRow(name="demo"))
            self._event(s, "demo.seeded", "pool/demo", f"demo pool with {n_hosts} sim hosts in {racks} racks",
                        data={"hosts": n_hosts, "racks": racks, "flavors": list(FLAVORS)})
            return made

        for name, cap in self._write(tx):
            self.drivers.bind(HostBinding(name, "sim", "", cap))
