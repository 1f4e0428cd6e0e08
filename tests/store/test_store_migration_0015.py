"""Revision 0015 (fair-share weights, allocation policies, declared resources) on a database
holding workloads: allocations survive both directions, defaults are weight 1, policy max and no
declaration, and the schema equals the rows."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from test_store_migration_0010 import migrate  # the shared helper
from test_store_migration_0013 import allocations

from poolvisor.services import open_services
from poolvisor.store.engine import Store
from poolvisor.store.rows import Base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_0015_keeps_allocations_and_defaults(url: str) -> None:
    svc = open_services(url)
    try:
        svc.catalog.create_pool("p")
        svc.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192}, pool="p")
        svc.catalog.create_project("demo", weight=3)
        svc.shares.set_allocation_policy("p", "min")
        svc.workloads.create_workload("demo", "w0", demand={"vcpu": 4}, reservation={"vcpu": 1}, pool="p")
        svc.workloads.create_workload("demo", "w1", demand={"vcpu": 1}, pool="p")
    finally:
        svc.close()
    store = Store(url)
    try:
        before = allocations(store)
        migrate(store, "0013", command.downgrade)
        assert allocations(store) == before
        migrate(store, "head")
        assert allocations(store) == before
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    finally:
        store.close()
    svc = open_services(url)
    try:
        assert svc.catalog.get_project("demo").weight == 1.0  # the weight did not survive the downgrade
        assert svc.shares.get_allocation_policy("p") == "max"
        ws = {w.name: w for w in svc.workloads.list_workloads("demo")}
        assert ws["w0"].demand == {"vcpu": 1} and ws["w0"].resources is None  # what was set aside stays
        assert svc.repair.check().ok
    finally:
        svc.close()
