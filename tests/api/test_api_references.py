"""Dangling references are declared 409s that name the objects (never a bare "FOREIGN KEY
constraint failed"): deleting what a storage object still uses (hosts, compute pools routes), and
creating a storage or memory row whose referent a concurrent request deleted (storage pools,
devices, volume attach, memory reservation routes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event
from sqlalchemy.orm import Session

from poolvisor.services import Services
from poolvisor.store.rows import (
    AllocationRow,
    HostResourceRow,
    HostRow,
    MemoryStateRow,
    PoolRow,
    StorageDeviceRow,
    StoragePoolRow,
    VolumeAttachmentRow,
    WorkloadRow,
)


def _conflict(r: Any, *words: str) -> str:
    assert r.status_code == 409, r.text
    msg = r.json()["message"]
    assert "FOREIGN KEY" not in msg.upper() and all(w in msg for w in words), msg
    return str(msg)


def test_deleting_a_host_a_storage_device_is_local_to_names_the_device(
        client: Any, admin: dict[str, str], svc: Services) -> None:
    svc.hosts.create_host("lone", {"vcpu": 4, "memory_mib": 4096}, pool="demo")
    svc.volumes.create_pool("sp", replicas=1, access="local")
    svc.volumes.add_device("sp", "disk0", 1000, host="lone")
    _conflict(client.delete("/v1/hosts/lone", headers=admin), "host 'lone'", "storage device", "disk0")
    svc.volumes.delete_device("sp", "disk0")
    assert client.delete("/v1/hosts/lone", headers=admin).status_code == 204


def test_deleting_a_compute_pool_a_storage_pool_is_limited_to_names_the_storage_pool(
        client: Any, admin: dict[str, str], svc: Services) -> None:
    svc.catalog.create_pool("empty")
    svc.volumes.create_pool("sp", compute_pool="empty")
    _conflict(client.delete("/v1/pools/empty", headers=admin), "pool 'empty'", "storage pool", "sp")
    svc.volumes.delete_pool("sp")
    assert client.delete("/v1/pools/empty", headers=admin).status_code == 204


@contextmanager
def _deleted_meanwhile(new_row: type, victim: Any) -> Iterator[None]:
    """While active: when a flush inserts a `new_row`, the row it refers to is deleted first, in
    the same transaction (as a concurrent request that committed between the lookup and the
    insert would have done)."""
    def before_flush(s: Session, _ctx: Any, _inst: Any) -> None:
        if any(isinstance(o, new_row) for o in s.new):
            conn = s.connection()
            for stmt in victim(s):
                conn.execute(stmt)

    event.listen(Session, "before_flush", before_flush)
    try:
        yield
    finally:
        event.remove(Session, "before_flush", before_flush)


def _workload_gone(s: Session) -> list[Any]:
    ids = [o.workload_id for o in s.new if isinstance(o, VolumeAttachmentRow | MemoryStateRow)]
    return [delete(AllocationRow).where(AllocationRow.workload_id.in_(ids)),
            delete(WorkloadRow).where(WorkloadRow.id.in_(ids))]


def _host_gone(s: Session) -> list[Any]:
    ids = [o.host_id for o in s.new if isinstance(o, StorageDeviceRow)]
    return [delete(HostResourceRow).where(HostResourceRow.host_id.in_(ids)),
            delete(HostRow).where(HostRow.id.in_(ids))]


def _pool_gone(s: Session) -> list[Any]:
    ids = [o.compute_pool_id for o in s.new if isinstance(o, StoragePoolRow)]
    return [delete(PoolRow).where(PoolRow.id.in_(ids))]


@pytest.mark.parametrize("route", ["attach", "reservation", "device", "storage-pool"])
def test_creating_a_row_whose_referent_was_deleted_meanwhile_names_it(
        client: Any, admin: dict[str, str], svc: Services, route: str) -> None:
    svc.volumes.create_pool("sp", replicas=1)
    svc.volumes.add_device("sp", "d0", 10_000)
    svc.volumes.create_volume("demo", "v", "sp", 100)
    assert client.post("/v1/workloads", json={"name": "vm", "flavor": "small", "project": "demo"},
                       headers=admin).status_code == 201
    svc.hosts.create_host("lone", {"vcpu": 4, "memory_mib": 4096}, pool="demo")
    svc.catalog.create_pool("empty")
    if route == "attach":
        with _deleted_meanwhile(VolumeAttachmentRow, _workload_gone):
            r = client.post("/v1/volumes/v/attach", json={"workload": "vm"}, headers=admin)
        _conflict(r, "workload 'vm'", "deleted", "volume 'v'")
        assert svc.volumes.get_volume("demo", "v").attached_to is None
    elif route == "reservation":
        with _deleted_meanwhile(MemoryStateRow, _workload_gone):
            r = client.put("/v1/workloads/vm/memory-reservation?project=demo", json={"mib": 100},
                           headers=admin)
        _conflict(r, "workload 'vm'", "deleted")
    elif route == "device":
        with _deleted_meanwhile(StorageDeviceRow, _host_gone):
            r = client.post("/v1/storage-pools/sp/devices", json={"name": "d1", "capacity_mib": 100,
                                                                  "host": "lone"}, headers=admin)
        _conflict(r, "host 'lone'", "deleted")
        assert [d.name for d in svc.volumes.get_pool("sp").devices] == ["d0"]
    else:
        with _deleted_meanwhile(StoragePoolRow, _pool_gone):
            r = client.post("/v1/storage-pools", json={"name": "sp2", "compute_pool": "empty"}, headers=admin)
        _conflict(r, "pool 'empty'", "deleted")
        assert [p.name for p in svc.volumes.list_pools()] == ["sp"]
    assert svc.repair.check().ok, svc.repair.check().violations  # nothing half-written


def test_a_foreign_key_error_no_service_names_is_still_a_clear_409(svc: Services) -> None:
    """The store's fallback for a site that does not name the object: says what happened."""
    from poolvisor.domain.errors import ConflictError

    with pytest.raises(ConflictError, match="deleted meanwhile, or deletes one still in use"):
        svc.store.run(lambda s: s.execute(delete(PoolRow).where(PoolRow.name == "demo")))
