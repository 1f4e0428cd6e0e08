"""The Services facade: every use case, assembled from one mixin per topic, and open_services()."""

from __future__ import annotations

import threading
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.drivers.base import Driver
from poolvisor.drivers.registry import make_driver
from poolvisor.policies.placement import PlacementPolicy
from poolvisor.services.auth import AuthServices
from poolvisor.services.base import as_utc
from poolvisor.services.batch import BatchServices
from poolvisor.services.catalog import CatalogServices
from poolvisor.services.dataplane import DataplaneServices
from poolvisor.services.demo import DemoServices
from poolvisor.services.hosts import HostServices
from poolvisor.services.invariants import check_invariants
from poolvisor.services.leases import DEFAULT_LEASE_S, Leases
from poolvisor.services.memory import MemoryService
from poolvisor.services.records import CheckReport, EventRecord
from poolvisor.services.repair import RepairServices
from poolvisor.services.snapshot import PlacementCache
from poolvisor.services.utilization import UtilizationServices
from poolvisor.services.volumes import VolumeService
from poolvisor.store import Store, open_store
from poolvisor.store.rows import EventRow, HostRow

MAX_EVENTS = 1000


class Services(AuthServices, CatalogServices, HostServices, RepairServices, DemoServices, BatchServices,
               UtilizationServices, DataplaneServices):
    """All use cases; thread-safe, one session and one transaction per call."""

    def __init__(self, store: Store, driver: Driver, policy: PlacementPolicy | None = None,
                 lease_s: float = DEFAULT_LEASE_S):
        self.store = store
        self.driver = driver
        self.policy = policy or PlacementPolicy()
        self.cache = PlacementCache()
        self.leases = Leases(store, lease_s)
        self.task_wakeup = threading.Event()  # set by task submissions (executor.py waits on it)
        self.volumes = VolumeService(self)
        self.memory = MemoryService(self)

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

    def _sync_driver(self) -> None:
        """Tell the driver which hosts exist and which are dead (the database is the authority)."""
        rows = self._read(lambda s: s.execute(select(HostRow.name, HostRow.state)).all())
        fail = getattr(self.driver, "fail", None)
        for name, state in rows:
            self.driver.add_host(name, {})
            if state == "down" and fail is not None:
                fail(name)


def open_services(db_url: str | None = None, driver: str = "sim", *, repair: bool = True,
                  lease_s: float = DEFAULT_LEASE_S, policy: PlacementPolicy | None = None,
                  driver_options: dict[str, Any] | None = None) -> Services:
    """Open the store (migrated to head), the driver, and repair use cases a crash interrupted.

    db_url None -> POOLVISOR_DATABASE_URL or $POOLVISOR_HOME/poolvisor.db. Use cases this
    instance runs hold `lease_s`-second leases (renewed while they run); transient rows whose
    lease has expired (their process died) are resolved now (repair.py) and, in `poolvisor
    serve`, by a periodic sweep (sweeper.py).
    """
    drv = make_driver(driver, **(driver_options or {}))
    store = open_store(db_url)
    try:
        svc = Services(store, drv, policy, lease_s)
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
