"""Backups: a workload's spec and its driver-exported image, copied into a backup target, and
restored through the normal placement pipeline, onto any host (docs/backups.md).

A target is a directory on the server (`backup_targets`). A backup is a `backups` row named by
(project, workload name), not by a foreign key to the workload, so it outlives the workload and
the host it ran on: restoring after the host died or the workload was deleted is what it is for.
Its file `<target>/<project>/<workload>/<backup>.img` holds the image the host's driver exported
(BackupImage capability; a driver that lacks it answers 409 before anything is recorded), with a
`.json` manifest beside it (the spec and checksum, readable without the database).

Create and restore are tasks (`backup`, `backup_restore`) with progress. A create writes the
image to a `.part` file, re-reads it to check the SHA-256 the driver reported, then renames it;
a scheduled backup then applies its schedule's retention (the oldest beyond `keep` are deleted,
rows in the transaction that marks the new one ready, files after it commits). A restore checks
the file's SHA-256 against the recorded one, creates the workload through create_workload (the
placement pipeline: filters, weights, explanation; `--host` pins the host but the pipeline still
checks it fits), imports the image on the host chosen, and puts the workload in the state the
image holds. Restoring under the workload's own name works when that workload is gone or lost
(its host failed): the lost record is deleted first. A crash mid-restore is resumed: the journal
says whether the workload was already created.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError, PoolvisorError
from poolvisor.domain.models import check_name
from poolvisor.drivers.base import DriverError, DriverWorkload
from poolvisor.drivers.protocols import BackupImage, as_backup_image
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.context import ServiceContext
from poolvisor.services.records import (
    LOST,
    RUNNING,
    STOPPED,
    SUSPENDED,
    TASK_ACTIVE,
    TASK_SUCCEEDED,
    TaskRecord,
)
from poolvisor.services.tasks import IMAGE_KINDS, MIGRATE, TaskService
from poolvisor.services.workloads import WorkloadService
from poolvisor.store.rows import (
    BackupRow,
    BackupScheduleRow,
    BackupTargetRow,
    FlavorRow,
    GroupRow,
    HostRow,
    NetworkRow,
    NicRow,
    ProjectRow,
    TaskRow,
    WorkloadRow,
)

log = logging.getLogger("poolvisor.backups")
BACKUP, BACKUP_RESTORE = "backup", "backup_restore"
BACKUP_KINDS = (BACKUP, BACKUP_RESTORE)
CREATING, READY, RESTORING = "creating", "ready", "restoring"
BACKUPABLE = (RUNNING, STOPPED, SUSPENDED)
MAX_BACKUPS = 1000  # per workload
CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupTargetRecord:
    name: str
    kind: str
    path: str
    backups: int
    created_at: datetime


@dataclass(frozen=True)
class BackupRecord:
    name: str
    workload: str  # project/name
    project: str
    state: str  # creating, ready, restoring
    target: str
    host: str  # where it was taken
    workload_state: str  # what a restore returns the workload to
    size_bytes: int
    sha256: str
    scheduled: bool
    spec: dict[str, Any]
    created_at: datetime


class BackupService(ServiceBase):
    """Targets, backups and restores; create and restore are tasks (run_create, run_restore)."""

    def __init__(self, ctx: ServiceContext, tasks: TaskService, workloads: WorkloadService) -> None:
        super().__init__(ctx)
        self.tasks = tasks
        self.workloads = workloads

    # ---- targets ------------------------------------------------------------------------------
    def add_target(self, name: str, path: str) -> BackupTargetRecord:
        """An existing directory on the server; 422 unless absolute, a directory and writable. It is
        never created here: registering a target writes nothing on the server's filesystem."""
        check_name("backup target", name)
        if not isinstance(path, str) or not path or "\x00" in path or not os.path.isabs(path):
            raise InvalidInputError("backup target path must be an absolute path on the server")
        p = Path(os.path.normpath(path))
        try:  # any path a client sends: too long, a file, unreadable... is one 422
            usable = stat.S_ISDIR(os.stat(p).st_mode) and os.access(p, os.W_OK | os.X_OK)
        except (OSError, ValueError):
            usable = False
        if not usable:
            raise InvalidInputError(f"backup target path {str(p)[:200]!r} is not an existing writable "
                                    "directory")

        def tx(s: Session) -> BackupTargetRecord:
            if s.scalars(select(BackupTargetRow.id).filter_by(name=name)).first() is not None:
                raise ConflictError(f"backup target {name!r} already exists")
            t = BackupTargetRow(name=name, kind="dir", path=str(p), created_at=datetime.now(UTC))
            s.add(t)
            try:
                s.flush()
            except IntegrityError:
                raise ConflictError(f"backup target {name!r} already exists") from None
            self._event(s, "backup_target.created", f"backup-target/{name}", f"backup target {name} at {p}")
            return _target_record(t, 0)

        return self._write(tx)

    def list_targets(self) -> list[BackupTargetRecord]:
        def tx(s: Session) -> list[BackupTargetRecord]:
            counts = dict(s.execute(select(BackupRow.target_id, func.count())
                                    .group_by(BackupRow.target_id)).all())
            return [_target_record(t, int(counts.get(t.id, 0)))
                    for t in s.scalars(select(BackupTargetRow).order_by(BackupTargetRow.name))]

        return self._read(tx)

    def delete_target(self, name: str) -> None:
        """409 while backups or schedules use it (the files are never deleted behind their rows)."""
        check_name("backup target", name)

        def tx(s: Session) -> None:
            t = _target(s, name)
            n = s.scalar(select(func.count()).select_from(BackupRow).where(BackupRow.target_id == t.id)) or 0
            m = s.scalar(select(func.count()).select_from(BackupScheduleRow)
                         .where(BackupScheduleRow.target_id == t.id)) or 0
            if n or m:
                raise ConflictError(f"backup target {name!r} holds {n} backups and {m} schedules; "
                                    "delete them first")
            s.delete(t)
            self._event(s, "backup_target.deleted", f"backup-target/{name}", f"backup target {name} deleted")

        self._write(tx)

    def resolve_target(self, s: Session, name: str | None) -> BackupTargetRow:
        """The named target, or the only one when none is named."""
        if name is not None:
            check_name("backup target", name)
            return _target(s, name)
        rows = s.scalars(select(BackupTargetRow).order_by(BackupTargetRow.name).limit(2)).all()
        if not rows:
            raise ConflictError("no backup target; add one first (poolvisor backup-target add NAME PATH)")
        if len(rows) > 1:
            raise InvalidInputError("several backup targets exist: name one (--target)")
        return rows[0]

    # ---- create -------------------------------------------------------------------------------
    def submit_create(self, project: str, workload: str, *, target: str | None = None,
                      name: str | None = None, schedule_id: int | None = None,
                      now: datetime | None = None) -> TaskRecord:
        """Record the backup `creating` and queue its task. 409 for a taken name, a workload that
        is busy or not settled, or a host whose driver cannot export images."""
        if name is not None:
            check_name("backup", name)
        host = self._workload_host(project, workload, BACKUPABLE, "back up")
        self._images(host)  # 409 unsupported_by_driver before anything is recorded
        at = now or datetime.now(UTC)

        def taken_names(s: Session) -> set[str]:
            _w, p = self._workload(s, project, workload)
            return set(s.scalars(select(BackupRow.name).filter_by(project_id=p.id, workload=workload)))

        bname = name if name is not None else _auto_name(at, self._read(taken_names))

        def check(s: Session) -> int:
            w, p = self._workload(s, project, workload)
            _check_quiet(s, w)
            t = self.resolve_target(s, target)
            n = s.scalar(select(func.count()).select_from(BackupRow)
                         .where(BackupRow.project_id == p.id, BackupRow.workload == workload)) or 0
            if n >= MAX_BACKUPS:
                raise ConflictError(f"workload {workload!r} has {n} backups (the limit); delete some")
            if _find(s, project, workload, bname) is not None:
                raise ConflictError(f"workload {workload!r} already has a backup {bname!r}")
            h = s.get(HostRow, w.host_id)
            assert h is not None
            s.add(BackupRow(project_id=p.id, workload=workload, name=bname, state=CREATING, target_id=t.id,
                            schedule_id=schedule_id, spec=_spec(s, w), host=h.name, workload_state=w.state,
                            path=f"{project}/{workload}/{bname}.img", size_bytes=0, sha256="",
                            created_at=datetime.now(UTC)))
            try:
                s.flush()
            except IntegrityError:
                raise ConflictError(f"workload {workload!r} already has a backup {bname!r}") from None
            return w.id

        return self.tasks.submit(BACKUP, project, f"workload/{project}/{workload}",
                                 {"project": project, "name": workload, "backup": bname}, check)

    def run_create(self, task_id: int) -> None:
        p = self.tasks.get_task(task_id).params
        project, workload, name = str(p["project"]), str(p["name"]), str(p["backup"])
        part: Path | None = None
        try:
            host, dw, file = self._create_target(project, workload, name)
            self.tasks.task_note(task_id, f"export {workload} on {host} to {file}", progress=0.1)
            file.parent.mkdir(parents=True, exist_ok=True)
            part = file.with_name(file.name + ".part")
            with part.open("wb") as out:
                info = self._images(host).export_image(host, dw, out)
                out.flush()
                os.fsync(out.fileno())
            self.tasks.task_note(task_id, f"wrote {info.size_bytes} bytes; verifying", progress=0.8)
            got, size = _digest(part)
            if got != info.sha256 or size != info.size_bytes:
                raise DriverError(f"backup image of {workload} on disk ({size} bytes, sha256 {got[:12]}) "
                                  f"differs from what {host} exported ({info.size_bytes} bytes, "
                                  f"{info.sha256[:12]})")
            part.replace(file)
            part = None
        except (PoolvisorError, OSError) as e:
            if part is not None:
                with contextlib.suppress(OSError):
                    part.unlink()
            self._write(lambda s: _drop_row(s, project, workload, name))
            if isinstance(e, OSError):
                raise DriverError(f"backup of {workload} could not be written: {e.strerror or e}") from None
            raise
        expired: list[Path] = []

        def done(s: Session) -> None:
            b = _backup(s, project, workload, name)
            b.state, b.size_bytes, b.sha256 = READY, info.size_bytes, info.sha256
            b.workload_state = info.state
            result = {"workload": f"{project}/{workload}", "backup": name, "host": host,
                      "size_bytes": info.size_bytes, "sha256": info.sha256}
            if b.schedule_id is not None:
                result["expired"] = self._retain(s, project, b, expired)
            self.tasks.end_in(s, s.get(TaskRow, task_id), TASK_SUCCEEDED, result=result)
            self._event(s, "backup.created", f"workload/{project}/{workload}",
                        f"backup {name} of {workload} taken on {host} ({info.size_bytes} bytes)",
                        project=project,
                        data={"backup": name, "host": host, "task": task_id, "sha256": info.sha256})
            _write_manifest(file, project, workload, name, b)

        self._write(done)
        for f in expired:
            _unlink(f)

    def _retain(self, s: Session, project: str, b: BackupRow, expired: list[Path]) -> list[str]:
        """Delete this schedule's ready backups of the workload beyond its `keep`, oldest first."""
        sched = s.get(BackupScheduleRow, b.schedule_id)
        if sched is None:
            return []
        rows = s.scalars(select(BackupRow).where(BackupRow.schedule_id == sched.id,
                                                 BackupRow.workload == b.workload,
                                                 BackupRow.project_id == b.project_id,
                                                 BackupRow.state == READY)
                         .order_by(BackupRow.id.desc())).all()
        gone = []
        for old in rows[sched.keep:]:
            expired.append(self._file(s, old))
            gone.append(old.name)
            s.delete(old)
            self._event(s, "backup.expired", f"workload/{project}/{b.workload}",
                        f"backup {old.name} of {b.workload} expired (schedule keeps {sched.keep})",
                        project=project, data={"backup": old.name, "schedule": sched.id})
        return gone

    # ---- queries and delete -------------------------------------------------------------------
    def list(self, project: str, workload: str) -> list[BackupRecord]:
        """Oldest first; 404 when neither the workload nor a backup of it exists."""
        check_name("workload", workload)

        def tx(s: Session) -> list[BackupRecord]:
            p = self._project(s, project)
            rows = s.scalars(select(BackupRow).filter_by(project_id=p.id, workload=workload)
                             .order_by(BackupRow.id)).all()
            if not rows:
                self._workload(s, project, workload)  # 404 for a workload that never had one
            return [_record(s, project, r) for r in rows]

        return self._read(tx)

    def projects_with(self, workload: str) -> tuple[str, ...]:
        """The projects holding backups of a workload named `workload` (the API's lookup once the
        workload itself is gone)."""
        return self._read(lambda s: tuple(sorted(set(s.scalars(
            select(ProjectRow.name).join(BackupRow, BackupRow.project_id == ProjectRow.id)
            .where(BackupRow.workload == workload))))))

    def get(self, project: str, workload: str, name: str) -> BackupRecord:
        check_name("backup", name)
        return self._read(lambda s: _record(s, project, _backup(s, project, workload, name)))

    def delete(self, project: str, workload: str, name: str) -> None:
        """Delete a ready backup: its row, then its files (404 unknown, 409 while a task uses it)."""
        check_name("backup", name)
        files: list[Path] = []

        def tx(s: Session) -> None:
            b = _backup(s, project, workload, name)
            if b.state != READY:
                raise ConflictError(f"backup {name!r} of {workload!r} is {b.state}; retry when ready")
            files.append(self._file(s, b))
            s.delete(b)
            self._event(s, "backup.deleted", f"workload/{project}/{workload}",
                        f"backup {name} of {workload} deleted",
                        project=project, data={"backup": name})

        self._write(tx)
        for f in files:
            _unlink(f)

    # ---- restore ------------------------------------------------------------------------------
    def submit_restore(self, project: str, workload: str, name: str, *, as_name: str | None = None,
                       host: str | None = None) -> TaskRecord:
        """Queue a restore of a ready backup as `as_name` (default: the workload's own name, which
        must then be free or lost), placed by the pipeline (on `host` when given)."""
        check_name("backup", name)
        new = check_name("workload", as_name) if as_name is not None else workload
        if host is not None:
            check_name("host", host)
            self._read(lambda s: self._host(s, host))  # 404
            self._images(host)  # 409 when that host's driver cannot import images

        def check(s: Session) -> int | None:
            b = _backup(s, project, workload, name)
            if b.state != READY:
                raise ConflictError(f"backup {name!r} of {workload!r} is {b.state}")
            w = s.scalars(select(WorkloadRow).filter_by(project_id=b.project_id, name=new)).first()
            if w is not None and w.state != LOST:
                raise ConflictError(f"workload {new!r} exists ({w.state}); restore under another name "
                                    "(as_name) or delete it first",
                                    detail={"workload": new, "state": w.state})
            if w is not None:
                _check_quiet(s, w, states=(LOST,))
            b.state = RESTORING
            return w.id if w is not None else None

        params = {"project": project, "name": workload, "backup": name, "as": new, "host": host}
        return self.tasks.submit(BACKUP_RESTORE, project, f"workload/{project}/{new}", params, check)

    def run_restore(self, task_id: int) -> None:
        p = self.tasks.get_task(task_id).params
        journal = self._read(lambda s: _journal(s, task_id))
        project, workload, name, new = str(p["project"]), str(p["name"]), str(p["backup"]), str(p["as"])
        pin = p.get("host")
        created = journal.get("created")
        try:
            file, spec, sha, state = self._restore_source(project, workload, name)
            self.tasks.task_note(task_id, f"verify {file}", progress=0.1)
            got, _size = _digest(file)
            if got != sha:
                raise ConflictError(f"backup {name!r} of {workload!r} is corrupt: its file's sha256 "
                                    f"{got[:12]} is not the recorded {sha[:12]}")
            if created is None:
                self._drop_lost(project, new, task_id)
                self.tasks.task_note(task_id, f"place {new} through the placement pipeline", progress=0.3)
                rec = self.workloads.create_workload(project, new, host=str(pin) if pin else None,
                                                     **self._create_args(spec))
                created = rec.host
                self.tasks.task_note(task_id, f"{new} placed on {created}: "
                                     f"{(rec.explanation or {}).get('rule', '')}", progress=0.5,
                                     journal={"created": created, "explanation": rec.explanation})
        except OSError as e:  # missing, unreadable: the backup cannot be used, and says why
            self._write(lambda s: _set_state(s, project, workload, name, READY))
            raise ConflictError(f"backup {name!r} of {workload!r}: its file cannot be read from the "
                                f"target ({e.strerror or e})") from None
        except PoolvisorError:
            self._write(lambda s: _set_state(s, project, workload, name, READY))
            raise
        host = str(created)
        dw = DriverWorkload(f"{project}/{new}", str(spec["kind"]),
                            {k: float(v) for k, v in spec["demand"].items()}, spec=spec.get("resources"))
        try:
            self.tasks.task_note(task_id, f"import the image on {host}", progress=0.6)
            with file.open("rb") as src:
                info = self._images(host).import_image(host, dw, src)
            if info.sha256 != sha:
                raise DriverError(f"{host} imported an image with sha256 {info.sha256[:12]}, not {sha[:12]}")
        except (PoolvisorError, OSError) as e:
            with contextlib.suppress(PoolvisorError):  # the half-restored workload goes; the backup stays
                self.workloads.delete_workload(project, new)
            self._write(lambda s: _set_state(s, project, workload, name, READY))
            if isinstance(e, OSError):
                raise DriverError(f"backup {name!r} could not be read: {e.strerror or e}") from None
            raise

        def done(s: Session) -> None:
            w, _p = self._workload(s, project, new)
            b = _backup(s, project, workload, name)
            b.state = READY
            if info.state != w.state and w.state in BACKUPABLE:
                w.state, w.updated_at = info.state, datetime.now(UTC)
            expl = w.explanation or {}
            result = {"workload": f"{project}/{new}", "backup": name, "host": host, "state": w.state,
                      "from_host": b.host, "sha256": sha, "rule": expl.get("rule")}
            self.tasks.end_in(s, s.get(TaskRow, task_id), TASK_SUCCEEDED, result=result)
            self._event(s, "backup.restored", f"workload/{project}/{new}",
                        f"workload {new} restored from backup {name} of {workload} on {host} "
                        f"(taken on {b.host})", project=project,
                        data={"backup": name, "host": host, "from_host": b.host, "task": task_id})

        self._write(done)

    def _drop_lost(self, project: str, new: str, task_id: int) -> None:
        """Restoring over a lost workload (its host failed): delete its record first."""
        def look(s: Session) -> str | None:
            p = self._project(s, project)
            w = s.scalars(select(WorkloadRow).filter_by(project_id=p.id, name=new)).first()
            if w is None:
                return None
            if w.state != LOST:
                raise ConflictError(f"workload {new!r} exists ({w.state}); restore under another name")
            h = s.get(HostRow, w.host_id) if w.host_id is not None else None
            return h.name if h is not None else ""

        was = self._read(look)
        if was is not None:
            self.tasks.task_note(task_id, f"delete the lost record of {new} (was on {was or 'no host'})",
                                 progress=0.2)
            self.workloads.delete_workload(project, new)

    def _create_args(self, spec: dict[str, Any]) -> dict[str, Any]:
        """create_workload's arguments from a backup's spec: its flavor when it still exists with
        the same demand, else the recorded demand; its group, constraints and networks."""
        demand = {str(k): float(v) for k, v in spec["demand"].items()}
        declared = spec.get("resources")  # reservation/limit/shares: sized again where it lands
        if declared:
            demand = {str(r): float(d["limit"]) for r, d in declared.items()}  # its undeclared demand
        flavor = spec.get("flavor")
        if flavor is not None:
            fd = self._read(lambda s: s.scalars(select(FlavorRow.demand).filter_by(name=flavor)).first())
            if fd is None or {str(k): float(v) for k, v in fd.items()} != demand:
                flavor = None
        c = spec.get("constraints") or {}
        return {"flavor": flavor, "demand": None if flavor is not None else demand, "kind": spec["kind"],
                "priority": int(spec.get("priority", 0)), "group": spec.get("group"),
                "group_policy": spec.get("group_policy") if spec.get("group") else None,
                "required_labels": c.get("required_labels") or None,
                "forbidden_labels": c.get("forbidden_labels") or None, "pool": c.get("pool"),
                "networks": list(spec.get("networks") or []) or None,
                **({k: {str(r): float(d[k]) for r, d in declared.items()}
                    for k in ("reservation", "limit", "shares")} if declared else {})}

    # ---- what a cancel of a queued task undoes (registered on TaskService.on_cancel) -----------
    @staticmethod
    def cancelled_create(s: Session, t: TaskRow) -> None:
        p = t.params or {}
        b = _find(s, str(p.get("project")), str(p.get("name")), str(p.get("backup")))
        if b is not None and b.state == CREATING:
            s.delete(b)

    @staticmethod
    def cancelled_restore(s: Session, t: TaskRow) -> None:
        p = t.params or {}
        b = _find(s, str(p.get("project")), str(p.get("name")), str(p.get("backup")))
        if b is not None and b.state == RESTORING:
            b.state = READY

    # ---- internals ----------------------------------------------------------------------------
    def _images(self, host: str) -> BackupImage:
        return as_backup_image(self.drivers.driver_of(host), host=host)

    def _create_target(self, project: str, workload: str, name: str) -> tuple[str, DriverWorkload, Path]:
        def tx(s: Session) -> tuple[str, DriverWorkload, Path]:
            b = _backup(s, project, workload, name)
            if b.state != CREATING:
                raise ConflictError(f"backup {name!r} of {workload!r} is {b.state}, not {CREATING}")
            w, _p = self._workload(s, project, workload)
            if w.state not in BACKUPABLE or w.host_id is None:
                raise ConflictError(f"workload {workload!r} is {w.state}; its backup cannot run")
            h = s.get(HostRow, w.host_id)
            assert h is not None
            return h.name, self._driver_workload(project, w), self._file(s, b)

        return self._read(tx)

    def _restore_source(self, project: str, workload: str,
                        name: str) -> tuple[Path, dict[str, Any], str, str]:
        def tx(s: Session) -> tuple[Path, dict[str, Any], str, str]:
            b = _backup(s, project, workload, name)
            if b.state != RESTORING:
                raise ConflictError(f"backup {name!r} of {workload!r} is {b.state}, not {RESTORING}")
            return self._file(s, b), dict(b.spec), b.sha256, b.workload_state

        return self._read(tx)

    @staticmethod
    def _file(s: Session, b: BackupRow) -> Path:
        t = s.get(BackupTargetRow, b.target_id)
        assert t is not None
        return Path(t.path) / b.path


# ---- helpers ---------------------------------------------------------------------------------
def _check_quiet(s: Session, w: WorkloadRow, states: tuple[str, ...] = BACKUPABLE) -> None:
    """409 unless the workload is settled and no migration, snapshot or backup task of it runs."""
    if w.state not in states:
        raise ConflictError(f"workload {w.name!r} is {w.state}; retry")
    kinds = (MIGRATE, *IMAGE_KINDS)
    busy = s.scalars(select(TaskRow.kind).where(TaskRow.workload_id == w.id, TaskRow.state.in_(TASK_ACTIVE),
                                                TaskRow.kind.in_(kinds))).first()
    if busy is not None:
        raise ConflictError(f"workload {w.name!r} has a {busy} task in progress; retry when it ends")


def _spec(s: Session, w: WorkloadRow) -> dict[str, Any]:
    """What re-creating the workload needs (kept in the backup, independent of its rows)."""
    group, policy = None, None
    if w.group_id is not None:
        g = s.get(GroupRow, w.group_id)
        if g is not None:
            group, policy = g.name, g.policy
    nets = s.scalars(select(NetworkRow.name).join(NicRow, NicRow.network_id == NetworkRow.id)
                     .where(NicRow.workload_id == w.id).order_by(NicRow.id)).all()
    c = dict(w.constraints or {})
    return {"kind": w.kind, "flavor": w.flavor, "demand": {str(k): float(v) for k, v in w.demand.items()},
            "priority": int(w.priority), "group": group, "group_policy": policy,
            "constraints": {"pool": c.get("pool"), "required_labels": dict(c.get("required_labels") or {}),
                            "forbidden_labels": dict(c.get("forbidden_labels") or {})},
            "networks": list(nets), "resources": w.resource_spec}


def _auto_name(at: datetime, taken: set[str]) -> str:
    base = f"b{at.astimezone(UTC):%Y%m%d-%H%M%S}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _journal(s: Session, task_id: int) -> dict[str, Any]:
    t = s.get(TaskRow, task_id)
    return dict(t.journal or {}) if t is not None else {}


def _target(s: Session, name: str) -> BackupTargetRow:
    t = s.scalars(select(BackupTargetRow).filter_by(name=name)).first()
    if t is None:
        raise NotFoundError(f"backup target {name!r} not found")
    return t


def _find(s: Session, project: str, workload: str, name: str) -> BackupRow | None:
    pid = s.scalars(select(ProjectRow.id).filter_by(name=project)).first()
    if pid is None:
        return None
    return s.scalars(select(BackupRow).filter_by(project_id=pid, workload=workload, name=name)).first()


def _backup(s: Session, project: str, workload: str, name: str) -> BackupRow:
    if s.scalars(select(ProjectRow.id).filter_by(name=project)).first() is None:
        raise NotFoundError(f"project {project!r} not found")
    b = _find(s, project, workload, name)
    if b is None:
        raise NotFoundError(f"workload {workload!r} has no backup {name!r}")
    return b


def _drop_row(s: Session, project: str, workload: str, name: str) -> None:
    b = _find(s, project, workload, name)
    if b is not None and b.state == CREATING:
        s.delete(b)


def _set_state(s: Session, project: str, workload: str, name: str, state: str) -> None:
    b = _find(s, project, workload, name)
    if b is not None:
        b.state = state


def _digest(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _write_manifest(image: Path, project: str, workload: str, name: str, b: BackupRow) -> None:
    """The backup's description beside its image, so a target is readable without the database."""
    doc = {"project": project, "workload": workload, "backup": name, "image": image.name, "sha256": b.sha256,
           "size_bytes": b.size_bytes, "state": b.workload_state, "host": b.host, "spec": b.spec,
           "created_at": as_utc(b.created_at).isoformat()}
    with contextlib.suppress(OSError):  # the image and the row are the backup; the manifest is a convenience
        image.with_suffix(".json").write_text(json.dumps(doc, indent=1, sort_keys=True))


def _unlink(image: Path) -> None:
    """Remove a deleted backup's files (its row is gone already: a file that cannot be removed is
    logged and left, never an error of the request)."""
    for f in (image, image.with_suffix(".json")):
        try:
            f.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("backup file %s left behind: %s", f, e.strerror or e)


def _target_record(t: BackupTargetRow, n: int) -> BackupTargetRecord:
    return BackupTargetRecord(t.name, t.kind, t.path, n, as_utc(t.created_at))


def _record(s: Session, project: str, b: BackupRow) -> BackupRecord:
    t = s.get(BackupTargetRow, b.target_id)
    return BackupRecord(b.name, f"{project}/{b.workload}", project, b.state, t.name if t is not None else "",
                        b.host, b.workload_state, int(b.size_bytes), b.sha256, b.schedule_id is not None,
                        dict(b.spec), as_utc(b.created_at))


def backup_violations(s: Session) -> list[str]:
    """Backups left creating or restoring with no active task of that kind naming them."""
    out = []
    projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
    for b in s.scalars(select(BackupRow).where(BackupRow.state.in_((CREATING, RESTORING)))):
        kind = BACKUP if b.state == CREATING else BACKUP_RESTORE
        tasks = s.scalars(select(TaskRow).where(TaskRow.kind == kind, TaskRow.state.in_(TASK_ACTIVE))).all()
        if not any((t.params or {}).get("backup") == b.name and (t.params or {}).get("name") == b.workload
                   for t in tasks):
            out.append(f"backup {b.name} of workload {projects.get(b.project_id)}/{b.workload} is {b.state} "
                       f"but no {kind} task runs")
    return out
