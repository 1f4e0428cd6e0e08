"""The Services facade: every use case, assembled from one mixin per topic, and open_services()."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.base import DriverError
from poolvisor.drivers.pool import DriverPool
from poolvisor.drivers.protocols import HostBinding, HostDriver
from poolvisor.drivers.sim import SimDriver
from poolvisor.policies.placement import PlacementPolicy
from poolvisor.services.auth import AuthServices
from poolvisor.services.base import as_utc
from poolvisor.services.batch import BatchServices
from poolvisor.services.catalog import CatalogServices
from poolvisor.services.dataplane import DataplaneServices
from poolvisor.services.demo import DemoServices
from poolvisor.services.fencing import FencingService
from poolvisor.services.hosts import HostServices
from poolvisor.services.invariants import check_invariants
from poolvisor.services.leases import DEFAULT_LEASE_S, Leases
from poolvisor.services.records import CheckReport, EventRecord
from poolvisor.services.repair import RepairServices
from poolvisor.services.sim_admin import SimAdminService
from poolvisor.services.snapshot import PlacementCache
from poolvisor.services.utilization import UtilizationServices
from poolvisor.store import Store, open_store
from poolvisor.store.rows import EventRow, HostResourceRow, HostRow

MAX_EVENTS = 1000
log = logging.getLogger("poolvisor.services")


class Services(AuthServices, CatalogServices, HostServices, RepairServices, DemoServices, BatchServices,
               UtilizationServices, DataplaneServices):
    """All use cases; thread-safe, one session and one transaction per call."""

    def __init__(self, store: Store, drivers: DriverPool, policy: PlacementPolicy | None = None,
                 lease_s: float = DEFAULT_LEASE_S):
        self.store = store
        self.drivers = drivers
        drivers.resolver = self.host_binding
        self.fencing = FencingService(self)
        self.sim = SimAdminService(self)  # fault injection: the sim admin API extension only
        self.policy = policy or PlacementPolicy()
        self.cache = PlacementCache()
        self.leases = Leases(store, lease_s)
        self.task_wakeup = threading.Event()  # set by task submissions (executor.py waits on it)

    def close(self) -> None:
        self.leases.close()
        self.store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_events(self, project: str | None = None, limit: int = 100) -> list[EventRecord]:
        """Newest first; project None = every event (admins), else that project's events."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
            raise InvalidInputError(f"limit must be 1..{MAX_EVENTS}")

        def tx(s: Session) -> list[EventRecord]:
            q = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
            if project is not None:
                self._project(s, project)
                q = q.where(EventRow.project == project)
            return [EventRecord(e.id, as_utc(e.time), e.kind, e.subject, e.message, e.project, dict(e.data))
                    for e in s.scalars(q)]

        return self._read(tx)

    def check(self, now: datetime | None = None) -> CheckReport:
        """The invariants (invariants.py); `now` is the time leases are judged against."""
        return self._read(partial(check_invariants, now=now))

    @property
    def driver(self) -> HostDriver:
        """The default sim driver (URI ""), where hosts without a binding run; tests inject faults
        there. Use cases go through `self.drivers` (the host's own driver)."""
        return self.drivers.default

    def host_binding(self, name: str) -> HostBinding | None:
        """The host row's driver, URI and capacity (the DriverPool's resolver); None if unknown."""
        def tx(s: Session) -> HostBinding | None:
            h = s.scalars(select(HostRow).filter_by(name=name)).first()
            return None if h is None else _binding(s, h)

        return self._read(tx)

    def _sync_driver(self) -> None:
        """Bind every host to its driver (the database is the authority). A node that cannot be
        reached now is bound on its first use; a sim host recorded down stays dead in the sim."""
        def tx(s: Session) -> list[tuple[HostBinding, str]]:
            caps: dict[int, dict[str, float]] = {}
            for hid, r, c in s.execute(select(HostResourceRow.host_id, HostResourceRow.resource,
                                              HostResourceRow.capacity)):
                caps.setdefault(hid, {})[r] = c
            rows = s.execute(select(HostRow.id, HostRow.name, HostRow.driver, HostRow.uri, HostRow.state)
                             .order_by(HostRow.name)).all()
            return [(HostBinding(n, d, u, caps.get(i, {})), st) for i, n, d, u, st in rows]

        for b, state in self._read(tx):
            try:
                d = self.drivers.bind(b)
            except DriverError as e:
                log.warning("host %s: driver %s at %r not reachable: %s", b.name, b.driver, b.uri, e.message)
                continue
            if state == "down" and isinstance(d, SimDriver):
                d.fail(b.name)


def _binding(s: Session, h: HostRow) -> HostBinding:
    cap = dict(s.execute(select(HostResourceRow.resource, HostResourceRow.capacity)
                         .where(HostResourceRow.host_id == h.id)).all())
    return HostBinding(h.name, h.driver, h.uri, cap)


def open_services(db_url: str | None = None, driver: str = "sim", *, repair: bool = True,
                  lease_s: float = DEFAULT_LEASE_S, policy: PlacementPolicy | None = None,
                  driver_options: dict[str, Any] | None = None) -> Services:
    """Open the store (migrated to head), the driver, and repair use cases a crash interrupted.

    db_url None -> POOLVISOR_DATABASE_URL or $POOLVISOR_HOME/poolvisor.db. Use cases this
    instance runs hold `lease_s`-second leases (renewed while they run); transient rows whose
    lease has expired (their process died) are resolved now (repair.py) and, in `poolvisor
    serve`, by a periodic sweep (sweeper.py).
    """
    drivers = DriverPool({driver: driver_options or {}})
    drivers.instance(driver, "")  # an unknown driver name or bad options fail here, before the store opens
    store = open_store(db_url)
    try:
        svc = Services(store, drivers, policy, lease_s)
    except BaseException:
        store.close()
        raise
    try:
        svc._sync_driver()
        if repair:
            svc.repair()
    except BaseException:
        svc.close()
        raise
    return svc
