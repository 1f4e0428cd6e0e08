"""Backup schedules: back a workload, or every member of a group, up every N seconds, keeping
the newest `keep` scheduled backups per workload (retention runs when each new one is ready,
services/backups.py). `BackupLoop` runs due schedules periodically on a `poolvisor.clock` clock
(a WallClock in `poolvisor serve`, a SimClock in tests), only while `is_leader()` says so.

A due schedule is claimed by an UPDATE guarded on its `next_at` (two replicas never both run
one), then each member gets a `backup` task; a member that cannot be backed up now (busy,
migrating, lost) is skipped with a `backup.skipped` event and tried again at the next run. Missed
runs (the server was down) are not caught up one by one: the next run is the first instant of the
grid after now.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.clock.background import BackgroundLoop
from poolvisor.clock.core import Clock
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError, PoolvisorError
from poolvisor.domain.models import check_name
from poolvisor.services.backups import BackupService
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.context import ServiceContext
from poolvisor.services.records import TaskRecord
from poolvisor.store.rows import BackupScheduleRow, BackupTargetRow, GroupRow, ProjectRow, WorkloadRow

log = logging.getLogger("poolvisor.backups")
WORKLOAD, GROUP = "workload", "group"
SCOPES = (WORKLOAD, GROUP)
MIN_EVERY_S, MAX_EVERY_S = 60.0, 366 * 86400.0
MAX_KEEP = 1000
DEFAULT_INTERVAL_S = 30.0


@dataclass(frozen=True)
class ScheduleRecord:
    id: int
    project: str
    scope: str  # workload or group
    name: str
    target: str
    every_s: float
    keep: int
    next_at: datetime
    last_at: datetime | None


@dataclass(frozen=True)
class Run:
    """What one pass of the loop did."""

    schedules: int
    submitted: list[TaskRecord]
    skipped: list[str]


class BackupScheduleService(ServiceBase):
    def __init__(self, ctx: ServiceContext, backups: BackupService) -> None:
        super().__init__(ctx)
        self.backups = backups
        # the hook leader election sets: BackupLoop runs schedules only while it answers True

    def set_schedule(self, project: str, scope: str, name: str, *, every_s: float, keep: int,
                     target: str | None = None, now: datetime | None = None) -> ScheduleRecord:
        """Create or replace the schedule of a workload or group (which must exist); its first run
        is due at once."""
        if scope not in SCOPES:
            raise InvalidInputError(f"schedule scope must be one of {', '.join(SCOPES)}")
        check_name(scope, name)
        if isinstance(every_s, bool) or not isinstance(every_s, int | float) or not math.isfinite(every_s) \
                or not MIN_EVERY_S <= every_s <= MAX_EVERY_S:
            raise InvalidInputError(f"every must be {MIN_EVERY_S:g} s..{MAX_EVERY_S / 86400:g} days")
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= MAX_KEEP:
            raise InvalidInputError(f"keep must be an integer in 1..{MAX_KEEP}")
        at = now or datetime.now(UTC)

        def tx(s: Session) -> ScheduleRecord:
            if scope == WORKLOAD:
                _w, p = self._workload(s, project, name)
            else:
                p = self._project(s, project)
                if s.scalars(select(GroupRow.id).filter_by(project_id=p.id, name=name)).first() is None:
                    raise NotFoundError(f"group {name!r} not found in project {project!r}")
            t = self.backups.resolve_target(s, target)
            q = select(BackupScheduleRow).filter_by(project_id=p.id, scope=scope, name=name)
            row = s.scalars(q).first()
            if row is None:
                row = BackupScheduleRow(project_id=p.id, scope=scope, name=name, created_at=at)
                s.add(row)
            row.target_id, row.every_s, row.keep, row.next_at = t.id, float(every_s), keep, at
            try:
                s.flush()
            except IntegrityError:
                raise ConflictError(f"the schedule of {scope} {name!r} changed concurrently; retry") from None
            self._event(s, "backup_schedule.set", f"{scope}/{project}/{name}",
                        f"{scope} {name} backed up every {every_s:g} s into {t.name}, keeping {keep}",
                        project=project, data={"schedule": row.id, "every_s": float(every_s), "keep": keep})
            return _record(s, row)

        return self._write(tx)

    def list_schedules(self, project: str | None = None) -> list[ScheduleRecord]:
        def tx(s: Session) -> list[ScheduleRecord]:
            q = select(BackupScheduleRow).order_by(BackupScheduleRow.id)
            if project is not None:
                q = q.where(BackupScheduleRow.project_id == self._project(s, project).id)
            return [_record(s, r) for r in s.scalars(q)]

        return self._read(tx)

    def delete_schedule(self, schedule_id: int, project: str | None = None) -> None:
        """Its backups stay (as unscheduled ones: no retention applies to them any more)."""
        def tx(s: Session) -> None:
            r = _schedule(s, schedule_id, project)
            pname = s.get(ProjectRow, r.project_id)
            s.delete(r)
            self._event(s, "backup_schedule.deleted", f"{r.scope}/{pname.name if pname else ''}/{r.name}",
                        f"backup schedule {schedule_id} deleted", project=pname.name if pname else None,
                        data={"schedule": schedule_id})

        self._write(tx)

    def run_due(self, now: datetime | None = None) -> Run:
        """Submit a backup task for every member of every schedule due at `now`."""
        at = now or datetime.now(UTC)
        due = self._read(lambda s: [(r.id, r.next_at) for r in s.scalars(
            select(BackupScheduleRow).where(BackupScheduleRow.next_at <= at).order_by(BackupScheduleRow.id))])
        submitted: list[TaskRecord] = []
        skipped: list[str] = []
        ran = 0
        for sid, was in due:
            claimed = self._write(partial(self._claim, sid=sid, was=was, at=at))
            if claimed is None:
                continue  # deleted, changed, or another replica ran it
            ran += 1
            project, target, members = claimed
            for w in members:
                try:
                    submitted.append(self.backups.submit_create(project, w, target=target, schedule_id=sid,
                                                                now=at))
                except PoolvisorError as e:
                    skipped.append(f"{project}/{w}: {e.message}")
                    self._write(partial(self._event, kind="backup.skipped", subject=f"workload/{project}/{w}",
                                        message=f"scheduled backup of {w} skipped: {e.message}",
                                        project=project, data={"schedule": sid}, severity="warning"))
        return Run(ran, submitted, skipped)

    def _claim(self, s: Session, *, sid: int, was: datetime,
               at: datetime) -> tuple[str, str, list[str]] | None:
        r = s.get(BackupScheduleRow, sid)
        if r is None:
            return None
        nxt = as_utc(r.next_at)
        step = timedelta(seconds=r.every_s)
        while nxt <= at:  # the next instant of the grid after now (missed runs are not replayed)
            nxt += step
        res = s.execute(update(BackupScheduleRow)
                        .where(BackupScheduleRow.id == sid, BackupScheduleRow.next_at == was)
                        .values(next_at=nxt, last_at=at))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return None
        p = s.get(ProjectRow, r.project_id)
        t = s.get(BackupTargetRow, r.target_id)
        assert p is not None and t is not None
        if r.scope == WORKLOAD:
            members = [r.name]
        else:
            g = s.scalars(select(GroupRow.id).filter_by(project_id=r.project_id, name=r.name)).first()
            members = [] if g is None else list(s.scalars(
                select(WorkloadRow.name).where(WorkloadRow.group_id == g).order_by(WorkloadRow.name)))
        return p.name, t.name, members


def _schedule(s: Session, schedule_id: int, project: str | None) -> BackupScheduleRow:
    r = s.get(BackupScheduleRow, schedule_id)
    if r is not None and project is not None:
        p = s.get(ProjectRow, r.project_id)
        if p is None or p.name != project:
            r = None
    if r is None:
        raise NotFoundError(f"backup schedule {schedule_id} not found")
    return r


def _record(s: Session, r: BackupScheduleRow) -> ScheduleRecord:
    p = s.get(ProjectRow, r.project_id)
    t = s.get(BackupTargetRow, r.target_id)
    return ScheduleRecord(r.id, p.name if p is not None else "", r.scope, r.name,
                          t.name if t is not None else "",
                          float(r.every_s), int(r.keep), as_utc(r.next_at),
                          as_utc(r.last_at) if r.last_at is not None else None)


def check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0.05 <= interval <= 3600:
        raise InvalidInputError("backup loop interval must be 0.05..3600 seconds")
    return float(interval)


class BackupLoop:
    """Runs due schedules every `interval` seconds of `clock` (a BackgroundLoop: a WallClock on a
    daemon thread by default; pass a SimClock and drive it to test on simulated time), only while
    `is_leader()` (leader election; always by default): the guarded claim already keeps two
    replicas from running one schedule twice, the gate keeps them from racing for it.
    A failing step is logged and retried at the next tick."""

    def __init__(self, schedules: BackupScheduleService, interval: float = DEFAULT_INTERVAL_S, *,
                 clock: Clock | None = None, is_leader: Callable[[], bool] | None = None) -> None:
        self.schedules = schedules
        self.runner = BackgroundLoop("backups", self._step, check_interval(interval), clock=clock,
                                     is_leader=is_leader, what="backup schedules", log=log, delay_first=True)
        self.clock, self.loop = self.runner.clock, self.runner.loop
        self.runs: list[Run] = []  # the last runs that found schedules due (tests, status)

    def _step(self, t: float) -> None:
        run = self.schedules.run_due(datetime.fromtimestamp(t, UTC))
        if run.schedules:
            self.runs = [*self.runs[-9:], run]
        if run.submitted or run.skipped:
            log.info("backup schedules: %d backups queued, %d skipped", len(run.submitted), len(run.skipped))

    def start(self) -> None:
        """The first step one interval from now: a server starting up has other work first."""
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()
