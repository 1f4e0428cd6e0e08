"""Services: one service object per domain over a shared context, and open_services().

    svc = open_services()
    svc.catalog.create_pool("p"); svc.hosts.create_host(...); svc.workloads.create_workload(...)

Each domain service (catalog, hosts, workloads, batch, tasks, ...) is built on the same
ServiceContext (context.py) and given, explicitly, the other services it needs; Services only
builds and wires them and owns the context's lifetime.
"""

from __future__ import annotations

import threading
from typing import Any

from poolvisor.drivers.pool import DriverPool
from poolvisor.drivers.protocols import HostDriver
from poolvisor.policies.placement import PlacementPolicy
from poolvisor.services.alerts import AlertService
from poolvisor.services.auth import AuthService
from poolvisor.services.backup_schedules import BackupScheduleService
from poolvisor.services.backups import BACKUP, BACKUP_RESTORE, BackupService
from poolvisor.services.batch import BatchService
from poolvisor.services.catalog import CatalogService
from poolvisor.services.context import ServiceContext
from poolvisor.services.controller import ControllerService
from poolvisor.services.dataplane import DataplaneService
from poolvisor.services.events import EventService
from poolvisor.services.ha import HaService
from poolvisor.services.host_power import HostPowerService
from poolvisor.services.hosts import HostService
from poolvisor.services.leases import DEFAULT_LEASE_S, Leases
from poolvisor.services.maintenance import DRAIN, MaintenanceService
from poolvisor.services.memory import MemoryService
from poolvisor.services.networks import NetworkService
from poolvisor.services.placement_cache import PlacementCache
from poolvisor.services.queue import QueueService
from poolvisor.services.quotas import QuotaService
from poolvisor.services.repair import RepairService
from poolvisor.services.routers import RouterService
from poolvisor.services.shares import SharesService
from poolvisor.services.sim_admin import SimAdminService
from poolvisor.services.tasks import CONSOLIDATE, MIGRATE, TaskService
from poolvisor.services.utilization import UtilizationService
from poolvisor.services.vm_snapshots import RESTORE, SNAPSHOT, SnapshotService
from poolvisor.services.volume_gc import VolumeGarbage
from poolvisor.services.volume_migrate import MIGRATE_VOLUME, VolumeMigration
from poolvisor.services.volumes import REBALANCE, VolumeService
from poolvisor.services.workloads import WorkloadService
from poolvisor.store import Store, open_store


class Services:
    """The domain services of one process; thread-safe, one session and transaction per step."""

    def __init__(self, store: Store, drivers: DriverPool, policy: PlacementPolicy | None = None,
                 lease_s: float = DEFAULT_LEASE_S):
        self.ctx = ctx = ServiceContext(store, drivers, policy or PlacementPolicy(), PlacementCache(),
                                        Leases(store, lease_s))
        self.auth = AuthService(ctx)
        self.catalog = CatalogService(ctx)
        self.hosts = HostService(ctx)
        drivers.resolver = self.hosts.binding  # a host this pool has not bound yet: its row says how
        self.tasks = TaskService(ctx)
        self.workloads = WorkloadService(ctx, self.tasks)
        self.utilization = UtilizationService(ctx)
        self.batch = BatchService(ctx, self.tasks, self.workloads, self.utilization)
        self.networks = NetworkService(ctx)
        self.routers = RouterService(ctx)
        self.dataplane = DataplaneService(ctx, self.routers)
        self.events = EventService(ctx)
        self.quotas = QuotaService(ctx)
        self.queue = QueueService(ctx, self.workloads)  # creations waiting for capacity
        self.shares = SharesService(ctx)  # pools' allocation policies (min / max / balanced)
        self.repair = RepairService(ctx, self.workloads, self.tasks)
        self.alerts = AlertService(ctx, self.catalog, self.hosts)
        self.alerts.quota_source = self.quotas.enforced_usage  # "quota nearly exhausted"
        self.tasks.handlers[MIGRATE] = self.workloads.lifecycle.run_migrate_task
        self.tasks.handlers[CONSOLIDATE] = self.batch.apply_consolidation
        self.snapshots = SnapshotService(ctx, self.tasks)
        self.tasks.handlers[SNAPSHOT] = self.snapshots.run_create
        self.tasks.handlers[RESTORE] = self.snapshots.run_restore
        self.tasks.on_cancel[SNAPSHOT] = self.snapshots.cancelled_create
        self.tasks.on_cancel[RESTORE] = self.snapshots.cancelled_restore
        self.backups = BackupService(ctx, self.tasks, self.workloads)
        self.backup_schedules = BackupScheduleService(ctx, self.backups)
        self.tasks.handlers[BACKUP] = self.backups.run_create
        self.tasks.handlers[BACKUP_RESTORE] = self.backups.run_restore
        self.tasks.on_cancel[BACKUP] = self.backups.cancelled_create
        self.tasks.on_cancel[BACKUP_RESTORE] = self.backups.cancelled_restore
        self.sim = SimAdminService(ctx, self.hosts)  # fault injection: the sim admin API extension only
        self.volumes = VolumeService(ctx, self.tasks)
        self.memory = MemoryService(ctx)
        self.tasks.handlers[REBALANCE] = self.volumes.run_rebalance_task
        self.repair.sweeps.append(self.volumes.drop_stale_snapshots)  # snapshots left creating
        self.workloads.lifecycle.release_disks = self.volumes.release_disks  # guest writes copied back
        self.volume_gc = VolumeGarbage(ctx)  # unreferenced object files (after migrations, scrubs)
        self.volume_migration = VolumeMigration(ctx, self.volumes, self.tasks, self.volume_gc)
        self.tasks.handlers[MIGRATE_VOLUME] = self.volume_migration.run_task
        self.maintenance = MaintenanceService(ctx, self.hosts, self.tasks, self.workloads)  # host drain
        self.tasks.handlers[DRAIN] = self.maintenance.run_drain
        self.tasks.on_cancel[DRAIN] = self.maintenance.cancelled_drain
        # heartbeats, fencing, restart (HaLoop); a restart re-plugs NICs and volume disks
        self.ha = HaService(ctx, self.hosts, self.workloads, self.volumes)
        self.workloads.admission = self.ha.check_admission  # HA admission control on creation
        self.host_power = HostPowerService(ctx, self.hosts)  # standby hosts: booted, woken for a create
        self.workloads.on_no_room = self.host_power.wake_for
        self.queue.power_sync = self.host_power.sync
        self.controller = ControllerService(ctx, self.catalog, self.hosts, self.workloads, self.tasks,
                                            self.utilization, self.batch,
                                            self.host_power)  # the reconcile round

    # the context's parts, for tools and tests (and new services built on this instance)
    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def drivers(self) -> DriverPool:
        """The driver instance of each host (drivers/pool.py): `drivers.driver_of(host)`."""
        return self.ctx.drivers

    @property
    def driver(self) -> HostDriver:
        """The default sim driver (URI ""), where hosts without a binding run; tests inject faults
        there. Use cases go through `drivers` (the host's own driver)."""
        return self.ctx.drivers.default

    @property
    def policy(self) -> PlacementPolicy:
        return self.ctx.policy

    @property
    def cache(self) -> PlacementCache:
        return self.ctx.cache

    @property
    def leases(self) -> Leases:
        return self.ctx.leases

    @property
    def task_wakeup(self) -> threading.Event:
        return self.ctx.task_wakeup

    def close(self) -> None:
        self.workloads.stop_batching()
        self.ctx.leases.close()
        self.ctx.store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        svc.hosts.sync_driver()
        if repair:
            svc.repair.run()
    except BaseException:
        svc.close()
        raise
    return svc
