"""Revision 0011 (backups): on a database holding a backup and a schedule, downgrade to 0010
drops the three tables, upgrade recreates them and the schema equals the rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from test_store_migration_0010 import migrate, tables

from poolvisor.services import open_services
from poolvisor.store.engine import Store
from poolvisor.store.migrate import current_revision, head_revision
from poolvisor.store.rows import Base

BACKUP_TABLES = {"backup_targets", "backup_schedules", "backups"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_0011_downgrades_and_upgrades(url: str, tmp_path: Path) -> None:
    svc = open_services(url)
    try:
        svc.catalog.create_pool("p")
        svc.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192}, pool="p")
        svc.catalog.create_project("demo")
        svc.workloads.create_workload("demo", "w0", demand={"vcpu": 1, "memory_mib": 512})
        (tmp_path / "t").mkdir()
        svc.backups.add_target("t", str(tmp_path / "t"))
        t = svc.backups.submit_create("demo", "w0", name="b")
        svc.tasks.claim_tasks(1)
        assert svc.tasks.run_task(t.id).state == "succeeded"  # type: ignore[union-attr]
        svc.backup_schedules.set_schedule("demo", "workload", "w0", every_s=3600, keep=2)
    finally:
        svc.close()
    store = Store(url)
    try:
        assert tables(store) >= BACKUP_TABLES
        migrate(store, "0010", command.downgrade)
        assert not BACKUP_TABLES & tables(store)
        migrate(store, "head")
        assert current_revision(store) == head_revision()
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    finally:
        store.close()
    svc = open_services(url)
    try:
        assert svc.backups.list_targets() == [] and svc.backup_schedules.list_schedules() == []
    finally:
        svc.close()
