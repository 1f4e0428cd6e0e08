"""Backups (docs/backups.md): targets (admins add and delete, everyone reads), a workload's
backups (take: 202 + task, list, show, delete, restore: 202 + task), and schedules.

Project-scoped like snapshots: members act in their project, admins anywhere. A workload's backups
stay reachable under its name after the workload was deleted (restoring it is their point). A
host whose driver cannot export or import images answers 409 `unsupported_by_driver`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from poolvisor.api.auth import Admin, SvcDep, Who, scope_project
from poolvisor.api.errors import errors
from poolvisor.api.fields import INTEGRAL, NAME_RULE, Name, NamePath, StrictModel
from poolvisor.api.routes.workloads import ProjectQ
from poolvisor.api.schemas import TaskOut
from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.services import Services
from poolvisor.services.auth import Principal
from poolvisor.services.backup_schedules import MAX_EVERY_S, MAX_KEEP, MIN_EVERY_S

router = APIRouter(tags=["backups"])  # what api/app.py includes
BackupPath = Annotated[Name, Path(description=f"backup name; {NAME_RULE}")]
# an absolute directory on the server, no control characters
DirPath = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^/[^\x00-\x1f\x7f]*$")]


class TargetCreate(StrictModel):
    name: Name
    path: DirPath


class TargetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    kind: str
    path: str
    backups: int
    created_at: datetime


class BackupCreate(StrictModel):
    name: Name | None = None  # default: b<UTC time>
    target: Name | None = None  # default: the only target


class BackupRestore(StrictModel):
    as_name: Name | None = None  # default: the workload's own name (free or lost)
    host: Name | None = None  # default: the host placement chooses


class BackupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    workload: str
    state: str  # creating, ready, restoring
    target: str
    host: str
    workload_state: str
    size_bytes: int
    sha256: str
    scheduled: bool
    spec: dict[str, Any]
    created_at: datetime


class ScheduleSet(StrictModel):
    """Exactly one of `workload` and `group`."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["workload"], "properties": {"workload": {"type": "string"}, "group": {"type": "null"}}},
        {"required": ["group"], "properties": {"group": {"type": "string"}, "workload": {"type": "null"}}},
    ]})
    project: Name | None = Field(default=None, description="members: their own; admins: default 'default'")
    workload: Name | None = None
    group: Name | None = None
    every_s: float = Field(ge=MIN_EVERY_S, le=MAX_EVERY_S, description="seconds between two backups")
    keep: Annotated[int, Field(ge=1, le=MAX_KEEP), INTEGRAL]
    target: Name | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> ScheduleSet:
        if (self.workload is None) == (self.group is None):
            raise ValueError("give exactly one of workload or group")
        return self


class ScheduleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project: str
    scope: Literal["workload", "group"]
    name: str
    target: str
    every_s: float
    keep: int
    next_at: datetime
    last_at: datetime | None


def _accepted(response: Response, task: object) -> TaskOut:
    out = TaskOut.model_validate(task)
    response.headers["Location"] = f"/v1/tasks/{out.id}"
    return out


def locate_backups(svc: Services, who: Principal, name: str, project: str | None) -> str:
    """The project of workload `name` (or of its backups, once it is gone) as this caller sees it."""
    scoped = scope_project(who, project)
    if scoped is not None:
        return scoped
    owners = sorted({w.project for w in svc.workloads.list_workloads() if w.name == name}
                    | set(svc.backups.projects_with(name)))
    if not owners:
        raise NotFoundError(f"workload {name!r} not found")
    if len(owners) > 1:
        raise ConflictError(f"workload {name!r} exists in projects {', '.join(owners)}; pass ?project=")
    return owners[0]


# ---- targets ---------------------------------------------------------------------------------
@router.get("/v1/backup-targets", response_model=list[TargetOut], responses=errors(401, 503))
def list_targets(svc: SvcDep, _: Who) -> list[TargetOut]:
    return [TargetOut.model_validate(t) for t in svc.backups.list_targets()]


@router.post("/v1/backup-targets", status_code=201, response_model=TargetOut,
                    responses=errors(401, 403, 409, 413, 422, 503))
def add_target(body: TargetCreate, svc: SvcDep, _: Admin) -> TargetOut:
    """An existing, writable directory on the server (422 otherwise; never created here)."""
    return TargetOut.model_validate(svc.backups.add_target(body.name, body.path))


@router.delete("/v1/backup-targets/{name}", status_code=204, responses=errors(401, 403, 404, 409, 422, 503))
def delete_target(name: NamePath, svc: SvcDep, _: Admin) -> None:
    """409 while backups or schedules use it."""
    svc.backups.delete_target(name)


# ---- a workload's backups --------------------------------------------------------------------
@router.post("/v1/workloads/{name}/backups", status_code=202, response_model=TaskOut,
              responses=errors(401, 404, 409, 413, 422, 503))
def create_backup(name: NamePath, response: Response, svc: SvcDep, who: Who, project: ProjectQ = None,
                  body: BackupCreate | None = None) -> TaskOut:
    """Back the workload up into a target: 202 with the `backup` task (also in `Location`)."""
    b = body or BackupCreate()
    where = locate_backups(svc, who, name, project)
    return _accepted(response, svc.backups.submit_create(where, name, target=b.target, name=b.name))


@router.get("/v1/workloads/{name}/backups", response_model=list[BackupOut],
                   responses=errors(401, 404, 409, 422, 503))
def list_backups(name: NamePath, svc: SvcDep, who: Who, project: ProjectQ = None) -> list[BackupOut]:
    """Oldest first; also after the workload was deleted."""
    where = locate_backups(svc, who, name, project)
    return [BackupOut.model_validate(r) for r in svc.backups.list(where, name)]


@router.get("/v1/workloads/{name}/backups/{backup}", response_model=BackupOut,
                   responses=errors(401, 404, 409, 422, 503))
def get_backup(name: NamePath, backup: BackupPath, svc: SvcDep, who: Who,
               project: ProjectQ = None) -> BackupOut:
    where = locate_backups(svc, who, name, project)
    return BackupOut.model_validate(svc.backups.get(where, name, backup))


@router.delete("/v1/workloads/{name}/backups/{backup}", status_code=204,
               responses=errors(401, 404, 409, 422, 503))
def delete_backup(name: NamePath, backup: BackupPath, svc: SvcDep, who: Who,
                  project: ProjectQ = None) -> None:
    where = locate_backups(svc, who, name, project)
    svc.backups.delete(where, name, backup)


@router.post("/v1/workloads/{name}/backups/{backup}/restore", status_code=202, response_model=TaskOut,
              responses=errors(401, 404, 409, 413, 422, 503))
def restore_backup(name: NamePath, backup: BackupPath, response: Response, svc: SvcDep, who: Who,
                   project: ProjectQ = None, body: BackupRestore | None = None) -> TaskOut:
    """Bring the workload back from the backup, as `as_name` (default its own name, which must be
    free or lost), on the host placement chooses (or `host`): 202 with the `backup_restore` task."""
    b = body or BackupRestore()
    where = locate_backups(svc, who, name, project)
    return _accepted(response, svc.backups.submit_restore(where, name, backup, as_name=b.as_name,
                                                          host=b.host))


# ---- schedules -------------------------------------------------------------------------------
@router.get("/v1/backup-schedules", response_model=list[ScheduleOut], responses=errors(401, 404, 422, 503))
def list_schedules(svc: SvcDep, who: Who, project: ProjectQ = None) -> list[ScheduleOut]:
    scoped = scope_project(who, project)
    return [ScheduleOut.model_validate(r) for r in svc.backup_schedules.list_schedules(scoped)]


@router.put("/v1/backup-schedules", response_model=ScheduleOut,
            responses=errors(401, 404, 409, 413, 422, 503))
def set_schedule(body: ScheduleSet, svc: SvcDep, who: Who) -> ScheduleOut:
    """Create or replace the schedule of one workload or of a group (exactly one of them)."""
    if body.workload is not None:
        where = locate_backups(svc, who, body.workload, body.project)
        scope, name = "workload", body.workload
    else:
        assert body.group is not None
        where = scope_project(who, body.project, default="default") or "default"
        scope, name = "group", body.group
    return ScheduleOut.model_validate(svc.backup_schedules.set_schedule(
        where, scope, name, every_s=body.every_s, keep=body.keep, target=body.target))


@router.delete("/v1/backup-schedules/{schedule_id}", status_code=204, responses=errors(401, 404, 422, 503))
def delete_schedule(schedule_id: int, svc: SvcDep, who: Who, project: ProjectQ = None) -> None:
    """Its backups stay (no retention applies to them any more)."""
    svc.backup_schedules.delete_schedule(schedule_id, scope_project(who, project))

