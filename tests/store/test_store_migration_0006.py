"""0005 -> 0006: existing hosts become sim hosts fenced through their driver; the schema equals the
rows (hosts.driver/uri/fence, workload_snapshots); 0006 downgrades and upgrades again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, select

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


def test_0005_hosts_become_sim_hosts_and_the_schema_matches(url: str) -> None:
    store = Store(url)
    try:
        migrate(store, "0005")
        now = datetime.now(UTC)
        with store.engine.execution_options(poolvisor_write=True).begin() as conn:
            md = MetaData()
            md.reflect(conn)
            assert "driver" not in md.tables["hosts"].c and "workload_snapshots" not in md.tables
            conn.execute(md.tables["hosts"].insert(), [
                {"id": 1, "name": "old", "pool_id": None, "state": "up", "labels": {}, "domain": "default",
                 "max_workloads": 0, "workloads": 0, "generation": 0, "created_at": now}])
            conn.execute(md.tables["host_resources"].insert(), [
                {"host_id": 1, "resource": "vcpu", "capacity": 8.0, "overcommit": 1.0, "allocated": 0.0}])
        migrate(store, "head")
        assert current_revision(store) == head_revision()
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            md = MetaData()
            md.reflect(c)
            [row] = c.execute(select(md.tables["hosts"])).mappings().all()
            c.rollback()
        assert (row["driver"], row["uri"], row["fence"]) == ("sim", "", "driver")
        migrate(store, "0005", command.downgrade)
        with store.engine.connect() as c:
            md = MetaData()
            md.reflect(c)
            assert "driver" not in md.tables["hosts"].c and "workload_snapshots" not in md.tables
            # the downgrade kept every row, also of the tables that reference hosts
            assert c.execute(select(md.tables["host_resources"].c.capacity)).scalars().all() == [8.0]
            c.rollback()
        migrate(store, "head")
    finally:
        store.close()
    svc = open_services(url)
    try:
        h = svc.hosts.get_host("old")
        assert (h.driver, h.uri, h.fence) == ("sim", "", "driver")
        assert svc.drivers.binding("old").driver == "sim"
        assert svc.drivers.default.heartbeat("old") and svc.repair.check().ok
    finally:
        svc.close()
