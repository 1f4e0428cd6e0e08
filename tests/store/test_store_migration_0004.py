"""A database at revision 0003 upgrades to 0004 in place: a migration journal kept in a migrating
workload's `constraints` moves into a running migrate task (with its lease), which the repair then
resolves and closes; the schema equals the rows; 0004 downgrades (journal back) and upgrades again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def make_0003_database(url: str) -> None:
    """A migration h0 -> h1 interrupted 10 minutes ago: the allocation on h1, the way back in the
    workload's constraints, the dead process's lease long expired."""
    store = Store(url)
    try:
        migrate(store, "0003")
        now = datetime.now(UTC)
        with store.engine.execution_options(poolvisor_write=True).begin() as conn:
            md = MetaData()
            md.reflect(conn)
            t = md.tables
            assert "tasks" not in t
            conn.execute(t["projects"].insert(), [{"id": 1, "name": "demo", "created_at": now}])
            conn.execute(t["hosts"].insert(), [
                {"id": i, "name": f"h{i}", "pool_id": None, "state": "up", "labels": {}, "domain": "default",
                 "max_workloads": 0, "workloads": i, "generation": 1, "created_at": now} for i in (0, 1)])
            conn.execute(t["host_resources"].insert(), [
                {"host_id": i, "resource": "vcpu", "capacity": 8.0, "overcommit": 1.0, "allocated": float(i)}
                for i in (0, 1)])
            conn.execute(t["workloads"].insert(), [{
                "id": 1, "project_id": 1, "name": "mover", "kind": "vm", "state": "migrating", "host_id": 1,
                "group_id": None, "flavor": None, "demand": {"vcpu": 1.0}, "priority": 0, "explanation": None,
                "constraints": {"pool": None, "migration": {"from": "h0", "to": "h1", "state": "stopped"}},
                "created_at": now, "updated_at": now, "lease_owner": "dead:1:x",
                "lease_expires": now - timedelta(minutes=10)}])
            conn.execute(t["allocations"].insert(), [{"workload_id": 1, "host_id": 1, "resource": "vcpu",
                                                      "amount": 1.0}])
    finally:
        store.close()


def test_a_0003_migration_journal_moves_into_a_task(url: str) -> None:
    make_0003_database(url)
    store = Store(url)
    try:
        migrate(store, "head")
        assert current_revision(store) == head_revision()
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            md = MetaData()
            md.reflect(c)
            [task] = c.execute(select(md.tables["tasks"])).mappings().all()
            [constraints] = c.execute(select(md.tables["workloads"].c.constraints)).scalars().all()
            c.rollback()
        assert task["kind"] == "migrate" and task["state"] == "running" and task["workload_id"] == 1
        assert task["journal"] == {"from": "h0", "to": "h1", "state": "stopped"}
        assert task["lease_owner"] == "dead:1:x" and "migration" not in constraints
    finally:
        store.close()
    svc = open_services(url)  # repairs: the sim knows nothing, so the move is confirmed
    try:
        w = svc.workloads.get_workload("demo", "mover")
        assert (w.state, w.host) == ("stopped", "h1")
        [t] = svc.tasks.list_tasks()
        assert t.state == "succeeded" and t.result == {"workload": "demo/mover", "from": "h0", "to": "h1",
                                                       "state": "stopped"}
        assert svc.repair.check().ok, svc.repair.check().violations
    finally:
        svc.close()


def test_0004_downgrades_with_the_journal_and_upgrades_again(url: str) -> None:
    make_0003_database(url)
    store = Store(url)
    try:
        migrate(store, "head")
        migrate(store, "0003", command.downgrade)
        with store.engine.connect() as c:
            md = MetaData()
            md.reflect(c)
            assert "tasks" not in md.tables
            [constraints] = c.execute(select(md.tables["workloads"].c.constraints)).scalars().all()
            c.rollback()
        assert constraints["migration"] == {"from": "h0", "to": "h1", "state": "stopped"}
        migrate(store, "head")
        assert current_revision(store) == head_revision()
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            c.rollback()
    finally:
        store.close()
