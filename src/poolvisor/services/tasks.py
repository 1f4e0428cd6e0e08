"""Tasks: long operations (migrate, consolidation apply; drain, snapshot, restore and backup to come)
journaled in the `tasks` table and run outside the HTTP request.

A task is submitted `queued` (the request only validates and writes the row, answering 202), taken
by a worker of this process's executor (executor.py) with a compare-and-set to `running`, and ends
`succeeded`, `failed`, `cancelled` or `rolled_back`. Like a transient workload, an active task
carries the lease of the process that owns it (leases.py), renewed while it runs; so after a crash
the next start, or the periodic repair sweep, finds every active task whose lease expired and
resumes or rolls it back (recover_tasks):

- a queued task is simply taken over by the next executor that looks;
- a running migration whose workload is `migrating` is resolved by the workload repair from the
  task's journal (from, to, the state before), which finishes or undoes the move and closes the
  task in the same transaction; one whose move never committed is queued again (resumed), or
  cancelled when it is a consolidation's child (its parent resumes the move);
- a running consolidation is queued again: its journal keeps the plan and its child tasks record
  which moves ran, so it continues with the remaining moves.

A cancel (cancel_task) ends a queued task at once (what its kind registered on
TaskService.on_cancel undoes, in the same transaction); on a running migration or consolidation
it sets `cancel` in the journal, which the running handler polls (task_progress,
cancel_requested): a migration aborts its driver migration (the workload stays on its source), a
consolidation stops before its next move.

A kind is a handler `(task_id) -> None` registered on TaskService.handlers by the domain service
that owns it (facade.py: migrate -> workloads, consolidate -> batch, snapshot/restore ->
snapshots): the handler advances the
journal, progress and log through the helpers here and ends the task (or raises a PoolvisorError,
which fails it). Every write re-checks that this process still owns the task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError, PoolvisorError
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.context import ServiceContext
from poolvisor.services.leases import utcnow
from poolvisor.services.records import (
    MIGRATING,
    TASK_ACTIVE,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_QUEUED,
    TASK_RUNNING,
    TASK_STATES,
    TaskRecord,
)
from poolvisor.store.rows import TaskRow, WorkloadRow

log = logging.getLogger("poolvisor.tasks")
MAX_TASKS = 1000  # per list call
MAX_ENTRIES = 200  # log entries kept per task (the oldest go first; the journal is never trimmed)
MIGRATE, CONSOLIDATE = "migrate", "consolidate"
# tasks that read or write a workload's image (snapshots, backups): none runs beside a migration
# of the workload, nor beside another one of them
IMAGE_KINDS = ("snapshot", "restore", "backup", "backup_restore")
CANCELLABLE = (MIGRATE, CONSOLIDATE, "drain")  # kinds whose running handler honours a cancel request
Handler = Callable[[int], None]
OnCancel = Callable[[Session, TaskRow], None]  # what a cancel of a queued task undoes, in its transaction


def task_expired(now: datetime) -> Any:
    """SQL: the task's lease ran out by `now` (an active task always has one)."""
    return or_(TaskRow.lease_expires <= now, TaskRow.lease_expires.is_(None))


class TaskService(ServiceBase):
    """The task journal: submission, queries, running by kind, crash recovery."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.handlers: dict[str, Handler] = {}  # kind -> handler, registered by the owning domain
        self.on_cancel: dict[str, OnCancel] = {}  # kind -> what a cancel of a queued task undoes

    @property
    def task_wakeup(self) -> threading.Event:
        """Set on every submission: the executor (executor.py) looks for work at once."""
        return self.ctx.task_wakeup

    # ---- submission ---------------------------------------------------------------------------
    def submit(self, kind: str, project: str | None, subject: str, params: dict[str, Any],
               check: Callable[[Session], int | None]) -> TaskRecord:
        """Queue a task in one transaction with `check(s)`, which validates the request (404/409 at
        once, as the synchronous call would) and returns the id of the workload it concerns."""
        def tx(s: Session) -> TaskRecord:
            wid = check(s)
            return _record(self.new_task(s, kind, project, subject, params, workload_id=wid))

        rec = self._write(tx)
        self.ctx.task_wakeup.set()
        return rec

    def new_task(self, s: Session, kind: str, project: str | None, subject: str, params: dict[str, Any],
                  *, workload_id: int | None = None, parent_id: int | None = None,
                  state: str = TASK_QUEUED) -> TaskRow:
        now = datetime.now(UTC)
        t = TaskRow(kind=kind, state=state, project=project, subject=subject, params=params, journal={},
                    entries=[_entry(now, f"{kind} {state}")], progress=0.0, workload_id=workload_id,
                    parent_id=parent_id, lease_owner=self.leases.owner, lease_expires=self.leases.expiry(),
                    created_at=now, updated_at=now)
        s.add(t)
        s.flush()
        self._event(s, f"task.{state}", f"task/{t.id}", f"task {t.id} ({kind} {subject}) {state}",
                    project=project, data={"task": t.id, "kind": kind})
        return t

    # ---- queries ------------------------------------------------------------------------------
    def get_task(self, task_id: int, project: str | None = None) -> TaskRecord:
        """project None = any task (admins); else only that project's (another's is not found)."""
        def tx(s: Session) -> TaskRecord:
            t = s.get(TaskRow, task_id)
            if t is None or (project is not None and t.project != project):
                raise NotFoundError(f"task {task_id} not found")
            return _record(t)

        return self._read(tx)

    def list_tasks(self, project: str | None = None, state: str | None = None,
                   limit: int = 100) -> list[TaskRecord]:
        """Newest first; project None = every task (admins)."""
        if state is not None and state not in TASK_STATES:
            raise InvalidInputError(f"unknown task state {state!r}; allowed: {', '.join(TASK_STATES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TASKS:
            raise InvalidInputError(f"limit must be 1..{MAX_TASKS}")

        def tx(s: Session) -> list[TaskRecord]:
            q = select(TaskRow).order_by(TaskRow.id.desc()).limit(limit)
            if project is not None:
                self._project(s, project)
                q = q.where(TaskRow.project == project)
            if state is not None:
                q = q.where(TaskRow.state == state)
            return [_record(t) for t in s.scalars(q)]

        return self._read(tx)

    # ---- running ------------------------------------------------------------------------------
    def claim_tasks(self, limit: int, now: datetime | None = None) -> list[int]:
        """Take up to `limit` queued top-level tasks (submitted here, or whose owner's lease
        lapsed) for this process's executor; a compare-and-set per task."""
        if limit <= 0:
            return []
        now = now or utcnow()
        mine = self.leases.owner

        def tx(s: Session) -> list[int]:
            q = (select(TaskRow.id).where(TaskRow.state == TASK_QUEUED, TaskRow.parent_id.is_(None),
                                          or_(TaskRow.lease_owner == mine, task_expired(now)))
                 .order_by(TaskRow.id).limit(limit))
            got = []
            for tid in s.scalars(q).all():
                r = s.execute(update(TaskRow).where(
                    TaskRow.id == tid, TaskRow.state == TASK_QUEUED,
                    or_(TaskRow.lease_owner == mine, task_expired(now)))
                    .values(lease_owner=mine, lease_expires=self.leases.expiry())
                    .execution_options(synchronize_session=False))
                if r.rowcount == 1:  # type: ignore[attr-defined]
                    got.append(tid)
            return got

        return self._write(tx)

    def run_task(self, task_id: int) -> TaskRecord | None:
        """Run a queued task this process owns to its end (None if it is not ours to run)."""
        def start(s: Session) -> str | None:
            t = s.get(TaskRow, task_id)
            if t is None or t.state != TASK_QUEUED or t.lease_owner != self.leases.owner:
                return None
            t.state = TASK_RUNNING
            _append(t, "running")
            return t.kind

        kind = self._write(start)
        if kind is None:
            return None
        with self.leases.hold_tasks([task_id]):
            self._drive(task_id, kind)
        return self.get_task(task_id)

    def start_task(self, kind: str, project: str | None, subject: str, params: dict[str, Any], *,
                   workload_id: int | None = None, parent_id: int | None = None) -> int:
        """Journal a task already `running` in the calling thread (its caller holds its lease)."""
        return self._write(lambda s: self.new_task(s, kind, project, subject, params, workload_id=workload_id,
                                                    parent_id=parent_id, state=TASK_RUNNING).id)

    def journal(self, task_id: int) -> dict[str, Any]:
        """The task's journal (what a handler resumed after a crash reads back)."""
        def tx(s: Session) -> dict[str, Any]:
            t = s.get(TaskRow, task_id)
            if t is None:
                raise NotFoundError(f"task {task_id} not found")
            return dict(t.journal or {})

        return self._read(tx)

    def run_task_inline(self, kind: str, project: str | None, subject: str, params: dict[str, Any], *,
                        workload_id: int | None = None) -> TaskRecord:
        """Journal and run a task in the calling thread (the services' synchronous use cases)."""
        tid = self.start_task(kind, project, subject, params, workload_id=workload_id)
        with self.leases.hold_tasks([tid]):
            self._drive(tid, kind)
        return self.get_task(tid)

    def _drive(self, task_id: int, kind: str) -> None:
        handler = self.handlers.get(kind)
        try:
            if handler is None:
                raise InvalidInputError(f"unknown task kind {kind!r}")
            handler(task_id)
        except PoolvisorError as e:
            self.end_task(task_id, TASK_FAILED, error=e.message)
        except Exception as e:  # a bug: the task fails with a clear error, the worker lives on
            log.exception("task %d (%s) crashed", task_id, kind)
            self.end_task(task_id, TASK_FAILED,
                          error=f"internal error ({type(e).__name__}); see the server log")

    # ---- helpers for handlers (each one transaction, only while this process owns the task) ----
    def mine_task(self, s: Session, task_id: int) -> TaskRow | None:
        t = s.get(TaskRow, task_id)
        if t is None or t.state not in TASK_ACTIVE or t.lease_owner != self.leases.owner:
            return None
        return t

    def task_note(self, task_id: int, message: str, *, progress: float | None = None,
                  journal: dict[str, Any] | None = None) -> None:
        """Log a step (and move progress, merge into the journal); ConflictError if taken over."""
        def tx(s: Session) -> None:
            t = self.mine_task(s, task_id)
            if t is None:
                raise ConflictError(f"task {task_id} is no longer run by this process")
            self.note_in(t, message, progress=progress, journal=journal)

        self._write(tx)

    @staticmethod
    def note_in(t: TaskRow, message: str, *, progress: float | None = None,
                 journal: dict[str, Any] | None = None) -> None:
        if journal:
            t.journal = {**t.journal, **journal}
        if progress is not None:
            t.progress = min(1.0, max(0.0, float(progress)))
        _append(t, message)

    def end_task(self, task_id: int, state: str, *, result: dict[str, Any] | None = None,
                 error: str | None = None) -> bool:
        """Close the task (if still ours and active); False when it was closed or taken over."""
        return self._write(lambda s: self.end_in(s, s.get(TaskRow, task_id), state, result=result,
                                                  error=error, only_mine=True))

    def end_in(self, s: Session, t: TaskRow | None, state: str, *, result: dict[str, Any] | None = None,
                error: str | None = None, only_mine: bool = False) -> bool:
        """Close `t` in the caller's transaction (a migration's finish closes its task with it)."""
        if t is None or t.state not in TASK_ACTIVE:
            return False
        if only_mine and t.lease_owner != self.leases.owner:
            return False
        now = datetime.now(UTC)
        t.state, t.result, t.error, t.finished_at = state, result, error, now
        t.lease_owner, t.lease_expires = None, None
        if state == "succeeded":
            t.progress = 1.0
        _append(t, state + (f": {error}" if error else ""), now)
        self._event(s, f"task.{state}", f"task/{t.id}", f"task {t.id} ({t.kind} {t.subject}) {state}"
                    + (f": {error}" if error else ""), project=t.project, data={"task": t.id, "kind": t.kind})
        return True

    def task_progress(self, task_id: int, progress: float, message: str | None = None) -> bool:
        """Move the task's progress (and log `message`); True when a cancel was requested for it
        or its parent. ConflictError if the task was taken over."""
        def tx(s: Session) -> bool:
            t = self.mine_task(s, task_id)
            if t is None:
                raise ConflictError(f"task {task_id} is no longer run by this process")
            t.progress = min(1.0, max(0.0, float(progress)))
            if message:
                _append(t, message)
            return _cancel_flag(s, t)

        return self._write(tx)

    def cancel_requested(self, task_id: int) -> bool:
        return self._read(lambda s: (t := s.get(TaskRow, task_id)) is not None and _cancel_flag(s, t))

    def cancel_task(self, task_id: int, project: str | None = None) -> TaskRecord:
        """Cancel a queued task now, or ask a running migration/consolidation to stop (it aborts
        and ends `cancelled`); 409 for a finished task, a child task, or a kind that cannot stop."""
        def tx(s: Session) -> TaskRecord:
            t = s.get(TaskRow, task_id)
            if t is None or (project is not None and t.project != project):
                raise NotFoundError(f"task {task_id} not found")
            if t.state not in TASK_ACTIVE:
                raise ConflictError(f"task {task_id} is already {t.state}")
            if t.parent_id is not None:
                raise ConflictError(f"task {task_id} is a step of task {t.parent_id}; cancel that one")
            if t.state == TASK_QUEUED:
                self.end_in(s, t, TASK_CANCELLED, error="cancelled before it ran")
                if t.kind in self.on_cancel:
                    self.on_cancel[t.kind](s, t)
            elif t.kind not in CANCELLABLE:
                raise ConflictError(f"a running {t.kind} task cannot be cancelled")
            elif not (t.journal or {}).get("cancel"):
                t.journal = {**(t.journal or {}), "cancel": True}
                _append(t, "cancel requested")
                self._event(s, "task.cancel_requested", f"task/{t.id}",
                            f"task {t.id} ({t.kind} {t.subject}): cancel requested", project=t.project,
                            data={"task": t.id, "kind": t.kind})
            s.flush()
            return _record(t)

        return self._write(tx)

    # ---- crash recovery -----------------------------------------------------------------------
    def recover_tasks(self, now: datetime | None = None) -> list[str]:
        """Resume or roll back running tasks whose owner's lease expired by `now` (after the
        workload repair, which closes the migrations it resolves). Queued tasks need nothing:
        the next executor takes them over (claim_tasks)."""
        now = now or utcnow()
        held = self.leases.held_tasks()

        def find(s: Session) -> list[tuple[int, str, int | None, int | None]]:
            q = (select(TaskRow.id, TaskRow.kind, TaskRow.workload_id, TaskRow.parent_id)
                 .where(TaskRow.state == TASK_RUNNING, task_expired(now)).order_by(TaskRow.id).limit(500))
            return [(i, k, w, p) for i, k, w, p in s.execute(q).all() if i not in held]

        done = []
        for tid, kind, wid, parent in self._read(find):
            msg = self._write(partial(self._recover_one, tid=tid, kind=kind, wid=wid, parent=parent, now=now))
            if msg:
                done.append(msg)
        if done:
            self.ctx.task_wakeup.set()
        return done

    def _recover_one(self, s: Session, *, tid: int, kind: str, wid: int | None, parent: int | None,
                     now: datetime) -> str | None:
        if kind == MIGRATE and wid is not None:
            w = s.get(WorkloadRow, wid)
            if w is not None and w.state == MIGRATING:
                return None  # the move committed: the workload repair resolves it from the journal
        # compare-and-set on the lease, so two sweepers never recover the same task
        r = s.execute(update(TaskRow).where(TaskRow.id == tid, TaskRow.state == TASK_RUNNING,
                                            task_expired(now))
                      .values(lease_owner=self.leases.owner, lease_expires=self.leases.expiry())
                      .execution_options(synchronize_session=False))
        if r.rowcount != 1:  # type: ignore[attr-defined]
            return None
        t = s.get(TaskRow, tid)
        assert t is not None
        s.refresh(t)
        if kind in self.handlers and parent is None:
            t.state = TASK_QUEUED
            if kind == MIGRATE:
                t.progress = 0.0
            _append(t, "its process died; resumed")
            self._event(s, "task.resumed", f"task/{tid}", f"task {tid} ({kind} {t.subject}) resumed "
                        "after its process died", project=t.project, data={"task": tid, "kind": kind})
            return f"task {tid} ({kind} {t.subject}) resumed"
        why = ("interrupted before anything moved; its parent task resumes the move" if parent is not None
               else f"unknown task kind {kind!r}")
        self.end_in(s, t, TASK_CANCELLED if parent is not None else TASK_FAILED, error=why)
        return f"task {tid} ({kind} {t.subject}) {t.state}: {why}"


def _cancel_flag(s: Session, t: TaskRow) -> bool:
    if (t.journal or {}).get("cancel"):
        return True
    parent = s.get(TaskRow, t.parent_id) if t.parent_id is not None else None
    return parent is not None and bool((parent.journal or {}).get("cancel"))


def _entry(now: datetime, message: str) -> dict[str, Any]:
    return {"time": now.isoformat(), "message": message}


def _append(t: TaskRow, message: str, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    t.entries = [*(t.entries or []), _entry(now, message)][-MAX_ENTRIES:]
    t.updated_at = now


def _record(t: TaskRow) -> TaskRecord:
    return TaskRecord(
        id=t.id, kind=t.kind, state=t.state, project=t.project, subject=t.subject,
        progress=float(t.progress), params=dict(t.params or {}), result=t.result, error=t.error,
        entries=[dict(e) for e in (t.entries or [])], parent=t.parent_id, created_at=as_utc(t.created_at),
        updated_at=as_utc(t.updated_at), finished_at=as_utc(t.finished_at) if t.finished_at else None)


def orphaned(s: Session, now: datetime, state: str = TASK_RUNNING) -> list[TaskRow]:
    """Tasks in `state` whose lease expired by `now`: a running one's owner died and no recovery
    has run yet; a queued one waits for an executor to take it over."""
    return list(s.scalars(select(TaskRow).where(TaskRow.state == state, task_expired(now))
                          .order_by(TaskRow.id)))


def migration_task(s: Session, workload_id: int) -> TaskRow | None:
    """The running migrate task whose move of this workload committed (its journal names the
    target), i.e. the ledger of the workload's `migrating` state."""
    q = (select(TaskRow).where(TaskRow.workload_id == workload_id, TaskRow.kind == MIGRATE,
                               TaskRow.state == TASK_RUNNING).order_by(TaskRow.id.desc()))
    for t in s.scalars(q):
        if (t.journal or {}).get("to"):
            return t
    return None
