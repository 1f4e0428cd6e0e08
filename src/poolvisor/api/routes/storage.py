"""Storage pools and their devices (reads: any token; writes: admin) and volumes (docs/storage.md).

Volumes belong to a project like workloads: members act inside their own, another project's
volumes do not exist for them (404); admins address a volume by name alone when that name is
unique across projects, and create into 'default' (created on first use).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.fields import Name, NamePath, QueryBool
from poolvisor.api.routes.networks import _listing, creating_in, locate
from poolvisor.api.schemas import TaskOut
from poolvisor.api.storage_schemas import (
    DeviceCreate,
    DeviceOut,
    DeviceStateChange,
    RebalanceOut,
    ScrubOut,
    StoragePoolCreate,
    StoragePoolOut,
    VolumeAttach,
    VolumeCreate,
    VolumeMigrate,
    VolumeOut,
    VolumeResize,
    VolumeSnapshot,
)
from poolvisor.services import Principal, Services

router = APIRouter(tags=["storage"])
ProjectQ = Annotated[Name | None, Query(description="project (admins; members always use their own)")]
DeviceName = Annotated[Name, Path(description="device name (unique within its storage pool)")]


def _task(task: object) -> JSONResponse:
    out = TaskOut.model_validate(task)
    return JSONResponse(jsonable_encoder(out), status_code=202, headers={"Location": f"/v1/tasks/{out.id}"})


# ---- storage pools and devices -------------------------------------------------------------------
@router.get("/v1/storage-pools", response_model=list[StoragePoolOut], responses=errors(401, 503))
def list_storage_pools(svc: SvcDep, _: Who) -> list[StoragePoolOut]:
    """Storage pools with their devices, space (provisioned, used, free, fragmentation) and health."""
    return [StoragePoolOut.model_validate(p) for p in svc.volumes.list_pools()]


@router.post("/v1/storage-pools", status_code=201, response_model=StoragePoolOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def create_storage_pool(body: StoragePoolCreate, svc: SvcDep, _: Admin) -> StoragePoolOut:
    return StoragePoolOut.model_validate(svc.volumes.create_pool(
        body.name, replicas=body.replicas, oversubscription=body.oversubscription,
        segment_mib=body.segment_mib, access=body.access, compute_pool=body.compute_pool,
        chunk_mib=body.chunk_mib))


@router.get("/v1/storage-pools/{name}", response_model=StoragePoolOut, responses=errors(401, 404, 422, 503))
def get_storage_pool(name: NamePath, svc: SvcDep, _: Who) -> StoragePoolOut:
    return StoragePoolOut.model_validate(svc.volumes.get_pool(name))


@router.delete("/v1/storage-pools/{name}", status_code=204, responses=errors(401, 403, 404, 409, 422, 503))
def delete_storage_pool(name: NamePath, svc: SvcDep, _: Admin) -> None:
    """Only an empty pool (no volume)."""
    svc.volumes.delete_pool(name)


@router.post("/v1/storage-pools/{name}/devices", status_code=201, response_model=DeviceOut,
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def add_device(name: NamePath, body: DeviceCreate, svc: SvcDep, _: Admin) -> DeviceOut:
    """Data moves onto the new device with the next rebalance (POST .../rebalance)."""
    return DeviceOut.model_validate(svc.volumes.add_device(
        name, body.name, body.capacity_mib, host=body.host, klass=body.device_class, domain=body.domain,
        path=body.path))


@router.put("/v1/storage-pools/{name}/devices/{device}/state", response_model=DeviceOut,
            responses=errors(401, 403, 404, 409, 413, 422, 503))
def set_device_state(name: NamePath, device: DeviceName, body: DeviceStateChange, svc: SvcDep,
                     _: Admin) -> DeviceOut:
    """leaving: the next rebalance drains the device, then removes it; failed: its replicas are
    lost until the next rebalance re-replicates them from the survivors (a failed device stays
    failed)."""
    return DeviceOut.model_validate(svc.volumes.set_device_state(name, device, body.state))


@router.delete("/v1/storage-pools/{name}/devices/{device}", status_code=204,
               responses=errors(401, 403, 404, 409, 422, 503))
def delete_device(name: NamePath, device: DeviceName, svc: SvcDep, _: Admin) -> None:
    """A device holding replicas must be drained first (state leaving, then rebalance); a failed
    one may go at once."""
    svc.volumes.delete_device(name, device)


@router.post("/v1/storage-pools/{name}/rebalance", response_model=RebalanceOut,
             responses={202: {"model": TaskOut, "description": "the queued storage-rebalance task"},
                        **errors(401, 403, 404, 409, 413, 422, 503)})
def rebalance(name: NamePath, svc: SvcDep, _: Admin,
              dry_run: Annotated[QueryBool, Query(description="only the plan: what would move")] = False
              ) -> RebalanceOut | JSONResponse:
    """Move only the replicas whose device changed since the devices did (a join, a leave, a
    failure: re-replication). A dry run answers the plan; otherwise 202 with a task (also in
    `Location`) whose result counts the segments, copies, MiB and lost segments."""
    if dry_run:
        return RebalanceOut.model_validate(svc.volumes.plan_rebalance(name))
    return _task(svc.volumes.submit_rebalance(name))


@router.post("/v1/storage-pools/{name}/scrub", response_model=ScrubOut,
             responses=errors(401, 403, 404, 409, 422, 503))
def scrub(name: NamePath, svc: SvcDep, _: Admin) -> ScrubOut:
    """Verify every replica of the pool's bytes (devices with a directory) and rewrite the
    corrupt, missing or stale ones from the newest valid replica."""
    return ScrubOut.model_validate(svc.volumes.scrub(name))


# ---- volumes -------------------------------------------------------------------------------------
def _volume_project(svc: Services, who: Principal, name: str, project: str | None) -> str:
    return locate(who, project, "volume", name,
                  lambda: (v.project for v in svc.volumes.list_volumes() if v.name == name))


@router.get("/v1/volumes", response_model=list[VolumeOut], responses=errors(401, 404, 422, 503))
def list_volumes(svc: SvcDep, who: Who, project: ProjectQ = None) -> list[VolumeOut]:
    return [VolumeOut.model_validate(v) for v in svc.volumes.list_volumes(_listing(svc, who, project))]


@router.post("/v1/volumes", status_code=201, response_model=VolumeOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def create_volume(body: VolumeCreate, svc: SvcDep, who: Who) -> VolumeOut:
    """Thin volumes take space as written, thick ones at once; 409 beyond the pool's capacity x
    over-subscription (thin) or its free space (thick), or with too few failure domains."""
    where = creating_in(svc, who, body.project)
    return VolumeOut.model_validate(svc.volumes.create_volume(
        where, body.name, body.pool, body.size_mib, thin=body.thin, klass=body.device_class,
        replicas=body.replicas))


@router.get("/v1/volumes/{name}", response_model=VolumeOut, responses=errors(401, 404, 409, 422, 503))
def get_volume(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> VolumeOut:
    return VolumeOut.model_validate(svc.volumes.get_volume(_volume_project(svc, who, name, project), name))


@router.delete("/v1/volumes/{name}", status_code=204, responses=errors(401, 404, 409, 422, 503))
def delete_volume(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    """An attached volume must be detached first (409)."""
    svc.volumes.delete_volume(_volume_project(svc, who, name, project), name)


@router.post("/v1/volumes/{name}/resize", response_model=VolumeOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def resize_volume(name: NamePath, body: VolumeResize, svc: SvcDep, who: Who,
                  project: ProjectQ = None) -> VolumeOut:
    """Online extension (attached or not); a volume never shrinks (409)."""
    where = _volume_project(svc, who, name, project)
    return VolumeOut.model_validate(svc.volumes.resize_volume(where, name, body.size_mib))


@router.post("/v1/volumes/{name}/snapshot", status_code=201, response_model=VolumeOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def snapshot_volume(name: NamePath, body: VolumeSnapshot, svc: SvcDep, who: Who,
                    project: ProjectQ = None) -> VolumeOut:
    """A read-only full copy of the volume's written segments (its own space and placement)."""
    where = _volume_project(svc, who, name, project)
    return VolumeOut.model_validate(svc.volumes.snapshot(where, name, body.name))


@router.post("/v1/volumes/{name}/migrate", status_code=202, response_model=TaskOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def migrate_volume(name: NamePath, body: VolumeMigrate, svc: SvcDep, who: Who,
                   project: ProjectQ = None) -> JSONResponse:
    """Move the volume to another storage pool while it stays in use: a `volume-migrate` task
    (also in `Location`) pre-copies every segment, then switches in one short step during which
    writes wait (none is lost) and frees the source copies."""
    where = _volume_project(svc, who, name, project)
    return _task(svc.volume_migration.submit(where, name, body.pool))


@router.post("/v1/volumes/{name}/attach", response_model=VolumeOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def attach_volume(name: NamePath, body: VolumeAttach, svc: SvcDep, who: Who,
                  project: ProjectQ = None) -> VolumeOut:
    """To a workload of the same project whose host reaches the pool (409 otherwise)."""
    where = _volume_project(svc, who, name, project)
    return VolumeOut.model_validate(svc.volumes.attach(where, name, body.workload))


@router.post("/v1/volumes/{name}/detach", response_model=VolumeOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def detach_volume(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> VolumeOut:
    where = _volume_project(svc, who, name, project)
    return VolumeOut.model_validate(svc.volumes.detach(where, name))
