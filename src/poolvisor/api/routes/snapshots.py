"""Workload snapshots: take (202 + task), list, delete, restore (202 + task).

Project-scoped like workloads (members act in their project). A host whose driver cannot take
snapshots answers 409 `unsupported_by_driver`; a workload that migrates, or has another snapshot
task in progress, answers 409 until it is done.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict

from poolvisor.api.auth import SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.fields import NAME_RULE, Name, NamePath, StrictModel
from poolvisor.api.routes.workloads import ProjectQ, locate_workload
from poolvisor.api.schemas import TaskOut

router = APIRouter(prefix="/v1/workloads", tags=["snapshots"])
SnapPath = Annotated[Name, Path(description=f"snapshot name; {NAME_RULE}")]


class SnapshotCreate(StrictModel):
    name: Name


class SnapshotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    workload: str
    state: str  # creating, ready, restoring
    workload_state: str
    size_bytes: int
    host: str
    created_at: datetime


def _accepted(response: Response, task: object) -> TaskOut:
    out = TaskOut.model_validate(task)
    response.headers["Location"] = f"/v1/tasks/{out.id}"
    return out


@router.post("/{name}/snapshots", status_code=202, response_model=TaskOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def create_snapshot(name: NamePath, body: SnapshotCreate, response: Response, svc: SvcDep, who: Who,
                    project: ProjectQ = None) -> TaskOut:
    """Take a snapshot of the workload: 202 with the `snapshot` task (also in `Location`)."""
    where = locate_workload(svc, who, name, project)
    return _accepted(response, svc.snapshots.submit_create(where, name, body.name))


@router.get("/{name}/snapshots", response_model=list[SnapshotOut], responses=errors(401, 404, 409, 422, 503))
def list_snapshots(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> list[SnapshotOut]:
    """Oldest first."""
    where = locate_workload(svc, who, name, project)
    return [SnapshotOut.model_validate(r) for r in svc.snapshots.list(where, name)]


@router.delete("/{name}/snapshots/{snap}", status_code=204, responses=errors(401, 404, 409, 422, 503))
def delete_snapshot(name: NamePath, snap: SnapPath, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    where = locate_workload(svc, who, name, project)
    svc.snapshots.delete(where, name, snap)


@router.post("/{name}/snapshots/{snap}/restore", status_code=202, response_model=TaskOut,
             responses=errors(401, 404, 409, 413, 422, 503))
def restore_snapshot(name: NamePath, snap: SnapPath, response: Response, svc: SvcDep, who: Who,
                     project: ProjectQ = None) -> TaskOut:
    """Return the workload to the snapshot (its state then, e.g. running): 202 with the `restore` task."""
    where = locate_workload(svc, who, name, project)
    return _accepted(response, svc.snapshots.submit_restore(where, name, snap))
