"""Revision 0010 (project quotas) on a database holding workloads: upgrade in place, quotas work on
the existing usage, the schema equals the rows; downgrade to 0005 drops the table and upgrades again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from poolvisor.domain.errors import QuotaExceededError
from poolvisor.services import open_services
from poolvisor.store.engine import Store
from poolvisor.store.migrate import alembic_config, current_revision, head_revision
from poolvisor.store.rows import Base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_url"))


def migrate(store: Store, target: str, step=command.upgrade) -> None:
    cfg = alembic_config()
    with store.engine.execution_options(poolvisor_write=True).begin() as conn:
        cfg.attributes["connection"] = conn
        step(cfg, target)


def tables(store: Store) -> set[str]:
    with store.engine.connect() as c:
        md = MetaData()
        md.reflect(c)
        return set(md.tables)


def test_0010_upgrades_downgrades_and_upgrades_again(url: str) -> None:
    svc = open_services(url)
    try:
        svc.catalog.create_pool("p")
        svc.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192}, pool="p")
        svc.catalog.create_project("demo")
        for i in range(3):
            svc.workloads.create_workload("demo", f"w{i}", demand={"vcpu": 1, "memory_mib": 512})
    finally:
        svc.close()
    store = Store(url)
    try:
        migrate(store, "0005", command.downgrade)
        assert "project_quotas" not in tables(store)
        migrate(store, "head")
        assert current_revision(store) == head_revision()
        assert "project_quotas" in tables(store)
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    finally:
        store.close()
    svc = open_services(url)
    try:
        svc.quotas.set_quota("demo", {"vcpu": 3})  # the existing workloads count at once
        assert svc.quotas.usage("demo").used["vcpu"] == 3
        with pytest.raises(QuotaExceededError):
            svc.workloads.create_workload("demo", "w3", demand={"vcpu": 1, "memory_mib": 512})
    finally:
        svc.close()
