"""Use cases over the store and the drivers, one service object per domain (facade.py).

    from poolvisor.services import Services, open_services
    svc = open_services()          # POOLVISOR_DATABASE_URL or $POOLVISOR_HOME/poolvisor.db, sim driver
    svc.catalog.create_pool("p"); svc.workloads.create_workload(...); ...; svc.close()

Domains: auth, catalog (pools, flavors, projects), hosts, workloads (create, delete, actions,
migrate), batch (batch placement, consolidation), tasks, utilization, networks, routers,
dataplane, events, repair (crash repair and the invariant check). Every method is
synchronous and thread-safe, raises only poolvisor.domain.errors classes and returns frozen
records from poolvisor.services.records.
"""

from poolvisor.services.facade import Services, open_services
from poolvisor.services.records import (
    CheckReport,
    EventRecord,
    FlavorRecord,
    HostRecord,
    PoolRecord,
    Principal,
    ProjectRecord,
    TokenRecord,
    WorkloadRecord,
)

__all__ = [
    "CheckReport",
    "EventRecord",
    "FlavorRecord",
    "HostRecord",
    "PoolRecord",
    "Principal",
    "ProjectRecord",
    "Services",
    "TokenRecord",
    "WorkloadRecord",
    "open_services",
]
