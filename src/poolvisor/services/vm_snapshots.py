"""Workload snapshots: create and restore run as tasks, list and delete answer at once.

A snapshot is a `workload_snapshots` row (state creating -> ready, restoring while a restore
runs) plus the driver's own snapshot on the workload's host (Snapshots capability: a host whose
driver cannot snapshot answers 409 before anything is recorded). Create and restore are tasks
(`snapshot`, `restore`): submitted queued (202), run by the executor, resumed after a crash by
re-running them, which is safe: a create whose driver snapshot already exists only marks the row
ready, and a restore is repeated. A snapshot or restore never runs while the workload migrates,
and a migration is refused while one of them runs (lifecycle._migration_source).

Sim snapshots live in the sim process: after a restart of the server the sim has forgotten them
and a restore of an older snapshot fails with the driver's error (the rows stay, delete works).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, NotFoundError, PoolvisorError
from poolvisor.domain.models import check_name
from poolvisor.drivers.base import DriverWorkload
from poolvisor.services.records import (
    MIGRATING,
    RUNNING,
    STOPPED,
    SUSPENDED,
    TASK_ACTIVE,
    TASK_SUCCEEDED,
    TaskRecord,
)
from poolvisor.services.tasks import HANDLERS, MIGRATE, ON_CANCEL
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


class SnapshotService:
    """Snapshot use cases over the shared context (store, drivers, tasks)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    # ---- submission ---------------------------------------------------------------------------
    def submit_create(self, project: str, workload: str, name: str) -> TaskRecord:
        """Record the snapshot `creating` and queue its task; 409 for a taken name, a workload that
        cannot be snapshotted now, or a host whose driver cannot snapshot."""
        check_name("snapshot", name)
        host = self._snapshot_host(project, workload)
        self.ctx.drivers.snapshots(host)  # 409 unsupported_by_driver before anything is recorded

        def tx(s: Session) -> int:
            w, _p = self.ctx._workload(s, project, workload)
            _check_quiet(s, w)
            if s.scalars(select(SnapshotRow.id).filter_by(workload_id=w.id, name=name)).first() is not None:
                raise ConflictError(f"workload {workload!r} already has a snapshot {name!r}")
            n = len(s.scalars(select(SnapshotRow.id).filter_by(workload_id=w.id)).all())
            if n >= MAX_SNAPSHOTS:
                raise ConflictError(f"workload {workload!r} has {n} snapshots (the limit); delete some")
            s.add(SnapshotRow(workload_id=w.id, name=name, state=CREATING, workload_state=w.state,
                              size_bytes=0, host=host, created_at=datetime.now(UTC)))
            s.flush()
            t = self.ctx._new_task(s, SNAPSHOT, project, f"workload/{project}/{workload}",
                                   {"project": project, "name": workload, "snapshot": name}, workload_id=w.id)
            return int(t.id)

        tid: int = self.ctx._write(tx)
        self.ctx.task_wakeup.set()
        rec: TaskRecord = self.ctx.get_task(tid)
        return rec

    def submit_restore(self, project: str, workload: str, name: str) -> TaskRecord:
        """Queue a restore of a ready snapshot (409 while the workload migrates or another
        snapshot task of it runs)."""
        check_name("snapshot", name)
        host = self._snapshot_host(project, workload)
        self.ctx.drivers.snapshots(host)

        def tx(s: Session) -> int:
            w, _p = self.ctx._workload(s, project, workload)
            _check_quiet(s, w)
            snap = _snapshot(s, w, workload, name)
            if snap.state != READY:
                raise ConflictError(f"snapshot {name!r} of {workload!r} is {snap.state}")
            snap.state = RESTORING
            t = self.ctx._new_task(s, RESTORE, project, f"workload/{project}/{workload}",
                                   {"project": project, "name": workload, "snapshot": name}, workload_id=w.id)
            return int(t.id)

        tid: int = self.ctx._write(tx)
        self.ctx.task_wakeup.set()
        rec: TaskRecord = self.ctx.get_task(tid)
        return rec

    # ---- queries and delete -------------------------------------------------------------------
    def list(self, project: str, workload: str) -> list[SnapshotRecord]:
        def tx(s: Session) -> list[SnapshotRecord]:
            w, _p = self.ctx._workload(s, project, workload)
            rows = s.scalars(select(SnapshotRow).filter_by(workload_id=w.id)
                             .order_by(SnapshotRow.created_at, SnapshotRow.id))
            return [_record(project, w.name, r) for r in rows]

        result: list[SnapshotRecord] = self.ctx._read(tx)
        return result

    def delete(self, project: str, workload: str, name: str) -> None:
        """Delete a ready snapshot on the driver, then its row (404 unknown, 409 while busy)."""
        check_name("snapshot", name)

        def look(s: Session) -> tuple[str | None, DriverWorkload]:
            w, _p = self.ctx._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            if snap.state != READY:
                raise ConflictError(f"snapshot {name!r} of {workload!r} is {snap.state}; retry when ready")
            host = s.get(HostRow, w.host_id) if w.host_id is not None else None
            return (host.name if host is not None else None), self.ctx._driver_workload(project, w)

        host, dw = self.ctx._read(look)
        if host is not None:  # a lost workload's snapshots went with its host: only the rows remain
            self.ctx.drivers.snapshots(host).snapshot_delete(host, dw, name)

        def tx(s: Session) -> None:
            w, _p = self.ctx._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            s.delete(snap)
            self.ctx._event(s, "snapshot.deleted", f"workload/{project}/{workload}",
                            f"snapshot {name} of {workload} deleted", project=project,
                            data={"snapshot": name})

        self.ctx._write(tx)

    # ---- task handlers ------------------------------------------------------------------------
    def run_create(self, task_id: int) -> None:
        p = self.ctx.get_task(task_id).params
        project, workload, name = str(p["project"]), str(p["name"]), str(p["snapshot"])
        try:
            host, dw = self._target(project, workload, name, CREATING)
            self.ctx.task_note(task_id, f"snapshot {name} of {workload} on {host}", progress=0.1)
            snaps = self.ctx.drivers.snapshots(host)
            have = {i.name: i for i in snaps.snapshot_list(host, dw)}  # resumed after a crash: taken already?
            info = have.get(name) or snaps.snapshot_create(host, dw, name)
        except PoolvisorError:
            self.ctx._write(lambda s: _drop(s, project, workload, name, self.ctx))
            raise

        def done(s: Session) -> None:
            w, _p = self.ctx._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            snap.state, snap.size_bytes = READY, int(info.size_bytes)
            snap.workload_state = info.state or w.state
            result = {"workload": f"{project}/{workload}", "snapshot": name, "host": host,
                      "size_bytes": int(info.size_bytes)}
            self.ctx._end_in(s, s.get(TaskRow, task_id), TASK_SUCCEEDED, result=result)
            self.ctx._event(s, "snapshot.created", f"workload/{project}/{workload}",
                            f"snapshot {name} of {workload} taken on {host}", project=project,
                            data={"snapshot": name, "host": host, "task": task_id})

        self.ctx._write(done)

    def run_restore(self, task_id: int) -> None:
        p = self.ctx.get_task(task_id).params
        project, workload, name = str(p["project"]), str(p["name"]), str(p["snapshot"])
        try:
            host, dw = self._target(project, workload, name, RESTORING)
            self.ctx.task_note(task_id, f"restore {workload} to snapshot {name} on {host}", progress=0.1)
            self.ctx.drivers.snapshots(host).snapshot_restore(host, dw, name)
        except PoolvisorError:
            self.ctx._write(lambda s: _set_state(s, project, workload, name, READY, self.ctx))
            raise

        def done(s: Session) -> None:
            w, _p = self.ctx._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            before, w.state, w.updated_at = w.state, snap.workload_state, datetime.now(UTC)
            snap.state = READY
            result = {"workload": f"{project}/{workload}", "snapshot": name, "host": host, "state": w.state}
            self.ctx._end_in(s, s.get(TaskRow, task_id), TASK_SUCCEEDED, result=result)
            self.ctx._event(s, "snapshot.restored", f"workload/{project}/{workload}",
                            f"workload {workload} restored to snapshot {name} ({before} -> {w.state})",
                            project=project, data={"snapshot": name, "host": host, "task": task_id})

        self.ctx._write(done)

    # ---- internals ----------------------------------------------------------------------------
    def _snapshot_host(self, project: str, workload: str) -> str:
        def tx(s: Session) -> str:
            w, _p = self.ctx._workload(s, project, workload)
            if w.state not in SNAPSHOTTABLE or w.host_id is None:
                raise ConflictError(f"cannot snapshot workload {workload!r} in state {w.state}")
            host = s.get(HostRow, w.host_id)
            assert host is not None
            return host.name

        result: str = self.ctx._read(tx)
        return result

    def _target(self, project: str, workload: str, name: str, state: str) -> tuple[str, DriverWorkload]:
        """(host, driver workload) of a snapshot task about to call its driver."""
        def tx(s: Session) -> tuple[str, DriverWorkload]:
            w, _p = self.ctx._workload(s, project, workload)
            snap = _snapshot(s, w, workload, name)
            if snap.state != state:
                raise ConflictError(f"snapshot {name!r} of {workload!r} is {snap.state}, not {state}")
            if w.state == MIGRATING or w.state not in SNAPSHOTTABLE or w.host_id is None:
                raise ConflictError(f"workload {workload!r} is {w.state}; its snapshot task cannot run")
            host = s.get(HostRow, w.host_id)
            assert host is not None
            return host.name, self.ctx._driver_workload(project, w)

        result: tuple[str, DriverWorkload] = self.ctx._read(tx)
        return result


def _check_quiet(s: Session, w: WorkloadRow) -> None:
    """409 unless the workload is settled and no migration or snapshot task of it is active."""
    if w.state not in SNAPSHOTTABLE:
        raise ConflictError(f"workload {w.name!r} is {w.state}; retry")
    busy = s.scalars(select(TaskRow.kind).where(TaskRow.workload_id == w.id, TaskRow.state.in_(TASK_ACTIVE),
                                                TaskRow.kind.in_((MIGRATE, *SNAPSHOT_KINDS)))).first()
    if busy is not None:
        raise ConflictError(f"workload {w.name!r} has a {busy} task in progress; retry when it ends")


def _snapshot(s: Session, w: WorkloadRow, workload: str, name: str) -> SnapshotRow:
    snap = s.scalars(select(SnapshotRow).filter_by(workload_id=w.id, name=name)).first()
    if snap is None:
        raise NotFoundError(f"workload {workload!r} has no snapshot {name!r}")
    return snap


def _drop(s: Session, project: str, workload: str, name: str, ctx: Any) -> None:
    """A create that failed: its row goes (the task fails with the driver's error)."""
    w, _p = ctx._workload(s, project, workload)
    _drop_row(s, w.id, name)


def _drop_row(s: Session, workload_id: int | None, name: str) -> None:
    q = select(SnapshotRow).filter_by(workload_id=workload_id, name=name, state=CREATING)
    snap = s.scalars(q).first()
    if snap is not None:
        s.delete(snap)


def _set_state(s: Session, project: str, workload: str, name: str, state: str, ctx: Any) -> None:
    w, _p = ctx._workload(s, project, workload)
    _ready_row(s, w.id, name, state)


def _ready_row(s: Session, workload_id: int | None, name: str, state: str = READY) -> None:
    snap = s.scalars(select(SnapshotRow).filter_by(workload_id=workload_id, name=name)).first()
    if snap is not None:
        snap.state = state


def _cancelled_create(s: Session, t: TaskRow) -> None:
    _drop_row(s, t.workload_id, str((t.params or {}).get("snapshot")))


def _cancelled_restore(s: Session, t: TaskRow) -> None:
    _ready_row(s, t.workload_id, str((t.params or {}).get("snapshot")))


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


def _run_snapshot(svc: Any, task_id: int) -> None:
    svc.snapshots.run_create(task_id)


def _run_restore(svc: Any, task_id: int) -> None:
    svc.snapshots.run_restore(task_id)


HANDLERS.update({SNAPSHOT: _run_snapshot, RESTORE: _run_restore})
ON_CANCEL.update({SNAPSHOT: _cancelled_create, RESTORE: _cancelled_restore})
