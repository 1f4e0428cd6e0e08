"""Revision 0016 (per-pool object size): a pool that held bytes before keeps 1 MiB objects, so
what it wrote reads back after the upgrade; new pools get 4 MiB; both directions keep the data
and the schema equals the rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from test_store_migration_0010 import migrate  # the shared helper

from poolvisor.services import open_services
from poolvisor.store.engine import Store
from poolvisor.store.rows import Base

MiB = 1 << 20


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_0016_old_pools_keep_1_mib_objects(url: str, tmp_path: Path) -> None:
    svc = open_services(url)
    try:
        svc.catalog.create_project("demo")
        svc.volumes.create_pool("sp", segment_mib=4, chunk_mib=1)
        for i in range(3):
            svc.volumes.add_device("sp", f"d{i}", 256, domain=f"r{i}", path=str(tmp_path / f"d{i}"))
        svc.volumes.create_volume("demo", "v", "sp", 8)
        data = os.urandom(5 * MiB + 3)
        svc.volumes.write_data("demo", "v", MiB, data)  # 1 MiB objects on disk
    finally:
        svc.close()
    store = Store(url)
    try:
        migrate(store, "0015", command.downgrade)
        with store.engine.connect() as c:
            assert "chunk_mib" not in str(c.execute(text("SELECT * FROM storage_pools")).keys())
        migrate(store, "head")
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    finally:
        store.close()
    svc = open_services(url)
    try:
        assert svc.volumes.get_pool("sp").chunk_mib == 1  # the upgrade's default: the old object size
        assert svc.volumes.read_data("demo", "v", MiB, len(data)) == data
        assert svc.volumes.create_pool("fresh", segment_mib=64).chunk_mib == 4
        assert svc.repair.check().ok
    finally:
        svc.close()
