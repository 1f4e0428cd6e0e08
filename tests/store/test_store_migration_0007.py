"""Revision 0007 (storage pools, volumes, memory state) upgrades, downgrades to the revision
before it (its tables gone, the rest intact) and upgrades again; the schema equals the rows."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData

from poolvisor.store.engine import Store
from poolvisor.store.migrate import alembic_config, current_revision, head_revision
from poolvisor.store.rows import Base

TABLES = {"storage_pools", "storage_devices", "volumes", "volume_segments", "volume_attachments",
          "memory_state"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("pg_url"))


def _migrate(store: Store, target: str, step=command.upgrade) -> None:
    cfg = alembic_config()
    with store.engine.execution_options(poolvisor_write=True).begin() as conn:
        cfg.attributes["connection"] = conn
        step(cfg, target)


def _tables(store: Store) -> set[str]:
    with store.engine.connect() as c:
        md = MetaData()
        md.reflect(c)
        c.rollback()
    return set(md.tables)


def test_0007_down_and_up(url: str) -> None:
    before = ScriptDirectory.from_config(alembic_config()).get_revision("0007").down_revision
    assert isinstance(before, str)
    store = Store(url)
    try:
        _migrate(store, "head")
        assert _tables(store) >= TABLES
        _migrate(store, before, command.downgrade)
        left = _tables(store)
        assert not TABLES & left and {"workloads", "hosts", "tasks"} <= left
        _migrate(store, "head")
        assert current_revision(store) == head_revision()
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            c.rollback()
    finally:
        store.close()
