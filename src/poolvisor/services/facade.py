"""The Services facade: public signatures of every use case (bodies land in the next commits)."""

from __future__ import annotations

from typing import Any

from poolvisor.services.records import (
    CheckReport,
    EventRecord,
    FlavorRecord,
    HostRecord,
    PoolRecord,
    Principal,
    ProjectRecord,
    Role,
    WorkloadRecord,
)


class Services:
    """All use cases; thread-safe, one session and one transaction per call."""

    def close(self) -> None: raise NotImplementedError

    # auth
    def bootstrap_admin_token(self) -> str | None: raise NotImplementedError
    def create_token(self, role: Role, project: str | None = None) -> str: raise NotImplementedError
    def authenticate(self, token: str) -> Principal | None: raise NotImplementedError

    # pools
    def create_pool(self, name: str, description: str = "") -> PoolRecord: raise NotImplementedError
    def list_pools(self) -> list[PoolRecord]: raise NotImplementedError
    def get_pool(self, name: str) -> PoolRecord: raise NotImplementedError
    def delete_pool(self, name: str) -> None: raise NotImplementedError

    # hosts
    def create_host(self, name: str, capacity: dict[str, float], pool: str | None = None,
                    overcommit: dict[str, float] | None = None, labels: dict[str, str] | None = None,
                    domain: str = "default", max_workloads: int = 0) -> HostRecord: raise NotImplementedError
    def list_hosts(self, pool: str | None = None) -> list[HostRecord]: raise NotImplementedError
    def get_host(self, name: str) -> HostRecord: raise NotImplementedError
    def set_host_state(self, name: str, state: str) -> HostRecord: raise NotImplementedError
    def delete_host(self, name: str) -> None: raise NotImplementedError
    def fail_host(self, name: str) -> HostRecord: raise NotImplementedError

    # flavors
    def create_flavor(self, name: str, demand: dict[str, float]) -> FlavorRecord: raise NotImplementedError
    def list_flavors(self) -> list[FlavorRecord]: raise NotImplementedError
    def get_flavor(self, name: str) -> FlavorRecord: raise NotImplementedError
    def delete_flavor(self, name: str) -> None: raise NotImplementedError

    # projects
    def create_project(self, name: str) -> ProjectRecord: raise NotImplementedError
    def list_projects(self) -> list[ProjectRecord]: raise NotImplementedError
    def get_project(self, name: str) -> ProjectRecord: raise NotImplementedError

    # workloads
    def create_workload(self, project: str, name: str, *, flavor: str | None = None,
                        demand: dict[str, float] | None = None, kind: str = "vm", priority: int = 0,
                        group: str | None = None, group_policy: str | None = None,
                        required_labels: dict[str, str] | None = None,
                        forbidden_labels: dict[str, str] | None = None, pool: str | None = None,
                        dry_run: bool = False) -> WorkloadRecord: raise NotImplementedError
    def list_workloads(self, project: str | None = None) -> list[WorkloadRecord]: raise NotImplementedError
    def get_workload(self, project: str, name: str) -> WorkloadRecord: raise NotImplementedError
    def delete_workload(self, project: str, name: str) -> None: raise NotImplementedError
    def workload_action(self, project: str, name: str, action: str) -> WorkloadRecord: raise NotImplementedError
    def migrate_workload(self, project: str, name: str, host: str | None = None) -> WorkloadRecord:
        raise NotImplementedError

    # events, invariants, demo
    def list_events(self, project: str | None = None, limit: int = 100) -> list[EventRecord]:
        raise NotImplementedError
    def check(self) -> CheckReport: raise NotImplementedError
    def seed_demo(self, n_hosts: int) -> None: raise NotImplementedError


def open_services(db_url: str | None = None, driver: str = "sim", **options: Any) -> Services:
    """Open the store (migrating it to head, repairing interrupted use cases) and a driver."""
    raise NotImplementedError
