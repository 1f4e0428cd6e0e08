"""Revision 0017 (volume and device ids never reused): the rebuild on SQLite keeps every volume,
segment, attachment, snapshot link and device (foreign keys are enforced on every poolvisor
connection, so a naive rebuild would cascade), the bytes read back, the schema equals the rows,
and a volume created after deleting the newest one gets a new id (its objects a new directory)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from test_store_migration_0010 import migrate  # the shared helper

from poolvisor.services import open_services
from poolvisor.store.engine import Store
from poolvisor.store.rows import Base, StorageDeviceRow, VolumeRow

MiB = 1 << 20


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_url"))


def _counts(store: Store) -> tuple[int, ...]:
    with store.engine.connect() as c:
        return tuple(int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                     for t in ("volumes", "volume_segments", "volume_attachments", "storage_devices"))


def _ids(svc, row):  # type: ignore[no-untyped-def]
    return sorted(svc.store.run(lambda s: list(s.scalars(select(row.id))), write=False))


def test_0017_keeps_every_row_and_never_reuses_a_deleted_volumes_id(url: str, tmp_path: Path) -> None:
    svc = open_services(url)
    try:
        svc.catalog.create_project("demo")
        svc.volumes.create_pool("sp", segment_mib=4, chunk_mib=1)
        for i in range(3):
            svc.volumes.add_device("sp", f"d{i}", 256, domain=f"r{i}", path=str(tmp_path / f"d{i}"))
        svc.volumes.add_device("sp", "gone", 256, domain="r9", path=str(tmp_path / "gone"))
        svc.volumes.delete_device("sp", "gone")  # the highest device id is free again
        svc.volumes.create_volume("demo", "v", "sp", 8)
        data = os.urandom(5 * MiB + 3)
        svc.volumes.write_data("demo", "v", MiB, data)
        svc.volumes.snapshot("demo", "v", "snap")
        svc.volumes.create_volume("demo", "last", "sp", 4)
        svc.volumes.delete_volume("demo", "last")  # the highest volume id is free again
        svc.volumes.create_volume("demo", "next", "sp", 4)  # at head: a new id, not the deleted one
        assert max(_ids(svc, VolumeRow)) == 4
        svc.volumes.delete_volume("demo", "next")
        vols, devs = _ids(svc, VolumeRow), _ids(svc, StorageDeviceRow)
    finally:
        svc.close()
    store = Store(url)
    try:
        before = _counts(store)
        migrate(store, "0016", command.downgrade)
        assert _counts(store) == before
        migrate(store, "head")
        assert _counts(store) == before
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            if store.dialect == "sqlite":
                assert "AUTOINCREMENT" in c.execute(text(
                    "SELECT sql FROM sqlite_master WHERE name = 'volumes'")).scalar_one()
    finally:
        store.close()
    svc = open_services(url)
    try:
        assert _ids(svc, VolumeRow) == vols and _ids(svc, StorageDeviceRow) == devs
        assert svc.volumes.read_data("demo", "v", MiB, len(data)) == data
        assert svc.volumes.read_data("demo", "snap", MiB, len(data)) == data
        assert svc.volumes.get_volume("demo", "snap").snapshot_of == "v"
        # the sequence starts after the largest id the upgrade found (an id deleted before the
        # upgrade above it can be taken once: create_volume clears its leftover directory)
        svc.volumes.create_volume("demo", "fresh", "sp", 4)
        fresh = max(_ids(svc, VolumeRow))
        assert fresh == max(vols) + 1 if url.startswith("sqlite") else fresh > max(vols)
        svc.volumes.delete_volume("demo", "fresh")
        svc.volumes.create_volume("demo", "again", "sp", 4)
        assert max(_ids(svc, VolumeRow)) > fresh  # from now on never reused
        svc.volumes.add_device("sp", "new", 256, domain="r8", path=str(tmp_path / "new"))
        new = max(_ids(svc, StorageDeviceRow))
        svc.volumes.delete_device("sp", "new")
        svc.volumes.add_device("sp", "new", 256, domain="r8", path=str(tmp_path / "new2"))
        assert max(_ids(svc, StorageDeviceRow)) > new
        assert svc.repair.check().ok, svc.repair.check().violations
    finally:
        svc.close()
