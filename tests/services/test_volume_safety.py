"""Volume data safety on `dir` devices (real directories): no two devices share a directory and the
collector fails closed on a directory it cannot prove is its device's (C1), volume keys are never
reused (C2), snapshots never stay `creating` and are never torn (C3, C4), attachments and deletes
do not race (R8), and the collector neither races writers nor outlives its scope (R9, R10)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from poolvisor.domain.errors import ConflictError
from poolvisor.services import Services
from poolvisor.storage import segment_io as sio
from poolvisor.store.rows import StorageDeviceRow, StoragePoolRow, VolumeRow

MiB = 1 << 20


def _vid(s: Services, name: str) -> int:
    return int(s.store.run(lambda x: x.scalars(select(VolumeRow.id).filter_by(name=name)).one(), write=False))


def _one_device_pools(s: Services, root: Path, *pools: str) -> None:
    s.catalog.create_project("demo")
    for p in pools:
        s.volumes.create_pool(p, segment_mib=4, replicas=1, chunk_mib=1)


# ---- C1: device identity ----------------------------------------------------------------------
def test_a_directory_spelled_differently_or_through_a_symlink_is_refused_as_a_second_device(
        svc: Services, tmp_path: Path) -> None:
    _one_device_pools(svc, tmp_path, "a", "b")
    svc.volumes.add_device("b", "d0", 1024, path=str(tmp_path / "d0"))
    (tmp_path / "x").mkdir()
    with pytest.raises(ConflictError, match="already the device 'd0' of storage pool 'b'"):
        svc.volumes.add_device("a", "d0", 1024, path=str(tmp_path / "x" / ".." / "d0"))
    (tmp_path / "link").symlink_to(tmp_path / "d0")
    with pytest.raises(ConflictError, match="already the device"):
        svc.volumes.add_device("a", "d0", 1024, path=str(tmp_path / "link"))
    assert sio.same_dir(tmp_path / "link", tmp_path / "x" / ".." / "d0")  # by (st_dev, st_ino)
    # a directory whose marker names a device that exists (its contents copied elsewhere)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / sio.MARKER).write_bytes((tmp_path / "d0" / sio.MARKER).read_bytes())
    with pytest.raises(ConflictError, match="marked as another device's"):
        svc.volumes.add_device("a", "c", 1024, path=str(tmp_path / "copy"))
    rec = svc.volumes.add_device("a", "e", 1024, path=str(tmp_path / "x" / ".." / "e"))
    assert rec.path == str(tmp_path / "e")  # stored by its real path
    dev_id = svc.store.run(lambda x: x.scalars(select(StorageDeviceRow.id).filter_by(name="e")).one(),
                           write=False)
    assert sio.device_marker(tmp_path / "e") == dev_id and sio.owns(tmp_path / "e", dev_id)


def _legacy_twin(s: Services, root: Path) -> None:
    """Pool b's device d0 and pool a's device at `x/../d0` (rows from before the path checks) with
    the id-less marker those versions wrote."""
    s.volumes.add_device("b", "d0", 1024, path=str(root / "d0"))
    (root / "x").mkdir(exist_ok=True)

    def tx(x):  # type: ignore[no-untyped-def]
        a = x.scalars(select(StoragePoolRow).filter_by(name="a")).one()
        x.add(StorageDeviceRow(pool_id=a.id, name="d0", capacity_mib=1024, klass="ssd", domain="r0",
                               state="up", path=str(root / "x" / ".." / "d0")))
    s.store.run(tx)
    (root / "d0" / sio.MARKER).write_text("poolvisor device\n")


def test_the_collector_keeps_another_pools_data_on_a_shared_legacy_directory(
        svc: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The reviewer's reproduction: before, a scrub of pool a deleted pool b's only replica."""
    _one_device_pools(svc, tmp_path, "a", "b")
    _legacy_twin(svc, tmp_path)
    svc.volumes.create_volume("demo", "v", "b", 16)
    data = os.urandom(MiB)
    svc.volumes.write_data("demo", "v", 0, data)
    with caplog.at_level(logging.WARNING, "poolvisor.volume_gc"):
        r = svc.volumes.scrub("a")
        assert (r.garbage_files, r.garbage_bytes) == (0, 0)
        assert svc.volume_gc.collect("b").files == 0  # neither side may collect a shared directory
    assert "is also device(s) d0: not collected" in caplog.text
    assert svc.volumes.read_data("demo", "v", 0, MiB) == data


def test_the_collector_skips_a_device_whose_marker_names_another_and_adopts_an_unshared_legacy_one(
        svc: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _one_device_pools(svc, tmp_path, "a")
    svc.volumes.add_device("a", "d0", 1024, path=str(tmp_path / "d0"))
    ghost = tmp_path / "d0" / "objects" / "v4242"
    ghost.mkdir()
    (ghost / "0000000000").write_bytes(b"g" * 30)
    dev_id = sio.device_marker(tmp_path / "d0")
    assert dev_id is not None
    (tmp_path / "d0" / sio.MARKER).write_text(f"poolvisor device\nid {dev_id + 100}\n")  # another's
    with caplog.at_level(logging.WARNING, "poolvisor.volume_gc"):
        assert svc.volume_gc.collect("a").files == 0
    assert f"names device id {dev_id + 100}: not collected" in caplog.text and ghost.exists()
    (tmp_path / "d0" / sio.MARKER).unlink()  # no marker at all: skipped too
    assert svc.volume_gc.collect("a").files == 0 and ghost.exists()
    (tmp_path / "d0" / sio.MARKER).write_text("poolvisor device\n")  # id-less, nobody else's: adopted
    assert svc.volume_gc.collect("a").files == 1 and not ghost.exists()
    assert sio.device_marker(tmp_path / "d0") == dev_id
