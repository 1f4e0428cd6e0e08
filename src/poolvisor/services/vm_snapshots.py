"""Workload snapshots: create and restore run as tasks, list and delete answer at once.

A snapshot is a `workload_snapshots` row (state creating -> ready, restoring while a restore
runs) plus the driver's own snapshot on the workload's host (Snapshots capability: a host whose
driver cannot snapshot answers 409 before anything is recorded). Create and restore are tasks
(`snapshot`, `restore`): submitted queued (202), run by the executor, resumed after a crash by
re-running them, which is safe: a create whose driver snapshot already exists only marks the row
ready, and a restore is repeated. A snapshot or restore never runs while the workload migrates,
and a migration is refused while one of them runs (lifecycle.migration_source).

Sim snapshots live in the sim process: after a restart of the server the sim has forgotten them
and a restore of an older snapshot fails with the driver's error (the rows stay, delete works).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, NotFoundError, PoolvisorError
from poolvisor.domain.models import check_name
from poolvisor.drivers.base import DriverWorkload
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.records import (
    MIGRATING,
    RUNNING,
    STOPPED,
    SUSPENDED,
    TASK_ACTIVE,
    TASK_SUCCEEDED,
    TaskRecord,
)
from poolvisor.services.tasks import IMAGE_KINDS, MIGRATE, TaskService
from poolvisor.store.rows import HostRow, SnapshotRow, TaskRow, WorkloadRow

SNAPSHOT, RESTORE = "snapshot", "restore"
SNAPSHOT_KINDS = (SNAPSHOT, RESTORE)
CREATING, READY, RESTORING = "creating", "ready", "restoring"
MAX_SNAPSHOTS = 100  # per workload
SNAPSHOTTABLE = (RUNNING, STOPPED, SUSPENDED)


@dataclass(frozen=True)
class SnapshotRecord:
    name: str
    workload: str  # project/name
    state: str  # creating, ready, restoring
    workload_state: str  # what a restore returns the workload to
    size_bytes: int
    host: str  # where it was taken
    created_at: datetime


class SnapshotService(ServiceBase):
    """Snapshot use cases; create and restore are tasks (their handlers: run_create, run_restore)."""

    def __init__(self, ctx: ServiceContext, tasks: TaskService) -> None:
        super().__init__(ctx)
        self.tasks = tasks

    # ---- submission ---------------------------------------------------------------------------
    def submit_create(self, project: str, workload: str, name: str) -> TaskRecord:
        """Record the snapshot `creating` and queue its task; 409 for a taken name, a workload that
        cannot be snapshotted now, or a host whose driver cannot snapshot."""
        check_name("snapshot", name)
        host = self._workload_host(project, workload, SNAPSHOTTABLE, "snapshot")
        self.drivers.snapshots(host)  # 409 unsupported_by_driver before anything is recorded

        def check(s: Session) -> int:  # in the submission's transaction: the row and its task together
            w, _p = self._workload(s, project, workload)
            _check_quiet(s, w)
            if s.scalars(select(SnapshotRow.id).filter_by(workload_id=w.id, name=name)).first() is not None:
                raise ConflictError(f"workload {workload!r} already has a snapshot {name!r}")
            n = len(s.scalars(select(SnapshotRow.id).filter_by(workload_id=w.id)).all())
            if n >= MAX_SNAPSHOTS:
                raise ConflictError(f"workload {workload!r} has {n} snapshots (the limit); delete some")
            s.add(SnapshotRow(workload_id=w.id, name=name, state=CREATING, workload_state=w.state,
                              size_bytes=0, host=host, created_at=datetime.now(UTC)))
            s.flush()
            return w.id

        return self.tasks.submit(SNAPSHOT, project, f"workload/{project}/{workload}",
                                 {"project": project, "name": workload, "snapshot": name}, check)

    def submit_restore(self, project: str, workload: str, name: str) -> TaskRecord:
        """Queue a restore of a ready snapshot (409 while the workload migrates or another
        snapshot task of it runs)."""
        check_name("snapshot", name)
        host = self._workload_host(project, workload, SNAPSHOTTABLE, "snapshot")
        self.drivers.snapshots(host)

        def check(s: Session) -> int:
            w, _p = self._workload(s, project, workload)
            _check_quiet(s, w)
            snap = _snapshot(s, w, workload, name)
            if snap.state != READY:
                raise ConflictError(f"snapshot {name!r} of {workload!r} is {snap.state}")
            snap.state = RESTORING
            return w.id

        return self.tasks.submit(RESTORE, project, f"workload/{project}/{workload}",
                                 {"project": project, "name": workload, "snapshot": name}, check)

    # ---- queries and delete -------------------------------------------------------------------
    def list(self, project: str, workload: str) -> list[SnapshotRecord]:
        def tx(s: Session) -> list[SnapshotRecord]:
            w, _p = self._workload(s, project, workload)
            rows = s.scalars(select(SnapshotRow).filter_by(workload_id=w.id)
                             .order_by(SnapshotRow.created_at, SnapshotRow.id))
            return [_record(project, w.name, r) for r in rows]

        return self._read(tx)

    def delete(self, project: str, workload: str, name: str) -> None:
        """Delete a ready snapshot on the driver, then its row (404 unknown, 409 while busy)."""
        check_name("snapshot", name)

        def look(s: Session) -> tuple[str | None, DriverWorkload]:
            w, _p = self._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            if snap.state != READY:
                raise ConflictError(f"snapshot {name!r} of {workload!r} is {snap.state}; retry when ready")
            host = s.get(HostRow, w.host_id) if w.host_id is not None else None
            return (host.name if host is not None else None), self._driver_workload(project, w)

        host, dw = self._read(look)
        if host is not None:  # a lost workload's snapshots went with its host: only the rows remain
            self.drivers.snapshots(host).snapshot_delete(host, dw, name)

        def tx(s: Session) -> None:
            w, _p = self._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            s.delete(snap)
            self._event(s, "snapshot.deleted", f"workload/{project}/{workload}",
                            f"snapshot {name} of {workload} deleted", project=project,
                            data={"snapshot": name})

        self._write(tx)

    # ---- task handlers ------------------------------------------------------------------------
    def run_create(self, task_id: int) -> None:
        p = self.tasks.get_task(task_id).params
        project, workload, name = str(p["project"]), str(p["name"]), str(p["snapshot"])
        try:
            host, dw = self._target(project, workload, name, CREATING)
            self.tasks.task_note(task_id, f"snapshot {name} of {workload} on {host}", progress=0.1)
            snaps = self.drivers.snapshots(host)
            have = {i.name: i for i in snaps.snapshot_list(host, dw)}  # resumed after a crash: taken already?
            info = have.get(name) or snaps.snapshot_create(host, dw, name)
        except PoolvisorError:
            self._write(lambda s: self._drop(s, project, workload, name))
            raise

        def done(s: Session) -> None:
            w, _p = self._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            snap.state, snap.size_bytes = READY, int(info.size_bytes)
            snap.workload_state = info.state or w.state
            result = {"workload": f"{project}/{workload}", "snapshot": name, "host": host,
                      "size_bytes": int(info.size_bytes)}
            self.tasks.end_in(s, s.get(TaskRow, task_id), TASK_SUCCEEDED, result=result)
            self._event(s, "snapshot.created", f"workload/{project}/{workload}",
                            f"snapshot {name} of {workload} taken on {host}", project=project,
                            data={"snapshot": name, "host": host, "task": task_id})

        self._write(done)

    def run_restore(self, task_id: int) -> None:
        p = self.tasks.get_task(task_id).params
        project, workload, name = str(p["project"]), str(p["name"]), str(p["snapshot"])
        try:
            host, dw = self._target(project, workload, name, RESTORING)
            self.tasks.task_note(task_id, f"restore {workload} to snapshot {name} on {host}", progress=0.1)
            self.drivers.snapshots(host).snapshot_restore(host, dw, name)
        except PoolvisorError:
            self._write(lambda s: self._set_state(s, project, workload, name, READY))
            raise

        def done(s: Session) -> None:
            w, _p = self._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            before, w.state, w.updated_at = w.state, snap.workload_state, datetime.now(UTC)
            snap.state = READY
            result = {"workload": f"{project}/{workload}", "snapshot": name, "host": host, "state": w.state}
            self.tasks.end_in(s, s.get(TaskRow, task_id), TASK_SUCCEEDED, result=result)
            self._event(s, "snapshot.restored", f"workload/{project}/{workload}",
                            f"workload {workload} restored to snapshot {name} ({before} -> {w.state})",
                            project=project, data={"snapshot": name, "host": host, "task": task_id})

        self._write(done)

    # ---- what a cancel of a queued task undoes (registered on TaskService.on_cancel) -----------
    @staticmethod
    def cancelled_create(s: Session, t: TaskRow) -> None:
        _drop_row(s, t.workload_id, str((t.params or {}).get("snapshot")))

    @staticmethod
    def cancelled_restore(s: Session, t: TaskRow) -> None:
        _ready_row(s, t.workload_id, str((t.params or {}).get("snapshot")))

    # ---- internals ----------------------------------------------------------------------------
    def _drop(self, s: Session, project: str, workload: str, name: str) -> None:
        """A create that failed: its row goes (the task fails with the driver's error)."""
        w, _p = self._workload(s, project, workload)
        _drop_row(s, w.id, name)

    def _set_state(self, s: Session, project: str, workload: str, name: str, state: str) -> None:
        w, _p = self._workload(s, project, workload)
        _ready_row(s, w.id, name, state)

    def _target(self, project: str, workload: str, name: str, state: str) -> tuple[str, DriverWorkload]:
        """(host, driver workload) of a snapshot task about to call its driver."""
        def tx(s: Session) -> tuple[str, DriverWorkload]:
            w, _p = self._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            if snap.state != state:
                raise ConflictError(f"snapshot {name!r} of {workload!r} is {snap.state}, not {state}")
            if w.state == MIGRATING or w.state not in SNAPSHOTTABLE or w.host_id is None:
                raise ConflictError(f"workload {workload!r} is {w.state}; its snapshot task cannot run")
            host = s.get(HostRow, w.host_id)
            assert host is not None
            return host.name, self._driver_workload(project, w)

        return self._read(tx)


def _check_quiet(s: Session, w: WorkloadRow) -> None:
    """409 unless the workload is settled and no migration or snapshot task of it is active."""
    if w.state not in SNAPSHOTTABLE:
        raise ConflictError(f"workload {w.name!r} is {w.state}; retry")
    busy = s.scalars(select(TaskRow.kind).where(TaskRow.workload_id == w.id, TaskRow.state.in_(TASK_ACTIVE),
                                                TaskRow.kind.in_((MIGRATE, *IMAGE_KINDS)))).first()
    if busy is not None:
        raise ConflictError(f"workload {w.name!r} has a {busy} task in progress; retry when it ends")


def _snapshot(s: Session, w: WorkloadRow, workload: str, name: str) -> SnapshotRow:
    snap = s.scalars(select(SnapshotRow).filter_by(workload_id=w.id, name=name)).first()
    if snap is None:
        raise NotFoundError(f"workload {workload!r} has no snapshot {name!r}")
    return snap


def _drop_row(s: Session, workload_id: int | None, name: str) -> None:
    q = select(SnapshotRow).filter_by(workload_id=workload_id, name=name, state=CREATING)
    snap = s.scalars(q).first()
    if snap is not None:
        s.delete(snap)


def _ready_row(s: Session, workload_id: int | None, name: str, state: str = READY) -> None:
    snap = s.scalars(select(SnapshotRow).filter_by(workload_id=workload_id, name=name)).first()
    if snap is not None:
        snap.state = state


def _record(project: str, workload: str, r: SnapshotRow) -> SnapshotRecord:
    t = r.created_at if r.created_at.tzinfo is not None else r.created_at.replace(tzinfo=UTC)
    return SnapshotRecord(r.name, f"{project}/{workload}", r.state, r.workload_state, int(r.size_bytes),
                          r.host, t)


def snapshot_violations(s: Session) -> list[str]:
    """Snapshots left creating or restoring with no active task of that kind naming them."""
    out = []
    q = select(SnapshotRow, WorkloadRow.name).join(WorkloadRow, WorkloadRow.id == SnapshotRow.workload_id) \
        .where(SnapshotRow.state.in_((CREATING, RESTORING)))
    for snap, wname in s.execute(q).all():
        kind = SNAPSHOT if snap.state == CREATING else RESTORE
        tasks = s.scalars(select(TaskRow).where(TaskRow.workload_id == snap.workload_id, TaskRow.kind == kind,
                                                TaskRow.state.in_(TASK_ACTIVE))).all()
        if not any((t.params or {}).get("snapshot") == snap.name for t in tasks):
            out.append(f"snapshot {snap.name} of workload {wname} is {snap.state} but no {kind} task runs")
    return out
