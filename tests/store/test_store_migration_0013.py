"""Revision 0013 (priority classes) on a database holding workloads: existing workloads become
class normal, their allocations survive both directions, and the schema equals the rows."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from test_store_migration_0010 import migrate  # the shared helper

from poolvisor.services import open_services
from poolvisor.store.engine import Store
from poolvisor.store.rows import AllocationRow, Base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_url"))


def allocations(store: Store) -> int:
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(AllocationRow)).scalar() or 0)


def test_0013_keeps_allocations_and_defaults_to_normal(url: str) -> None:
    svc = open_services(url)
    try:
        svc.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192})
        svc.catalog.create_project("demo")
        for i in range(3):
            svc.workloads.create_workload("demo", f"w{i}", demand={"vcpu": 1, "memory_mib": 512},
                                          priority_class="spot")
    finally:
        svc.close()
    store = Store(url)
    try:
        before = allocations(store)
        migrate(store, "0010", command.downgrade)
        assert allocations(store) == before
        migrate(store, "head")
        assert allocations(store) == before
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    finally:
        store.close()
    svc = open_services(url)
    try:
        ws = svc.workloads.list_workloads("demo")
        assert {w.priority_class for w in ws} == {"normal"}  # the class did not survive the downgrade
        assert svc.repair.check().ok
    finally:
        svc.close()
