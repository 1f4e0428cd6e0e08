"""Repair of use cases whose process died between two of their transactions.

Single transactions are atomic, so a crash can only leave a use case open between two of its
transactions, visible as a transient workload state carrying the dead process's lease:

- "placing" (create): confirmed "running" if the driver reports the workload on its host, otherwise
  rolled back (allocation released, row removed). It was never acknowledged.
- "deleting" (delete): the driver delete is repeated (it is idempotent) and the row removed.
- "migrating" (migrate; the allocation already moved): if the driver positively shows the workload
  on the source and not on the target, the allocation moves back; otherwise the move is confirmed
  (the database is the authority when the driver knows nothing, e.g. a restarted sim). The way
  back is read from the migration's task journal, and the task is closed (succeeded or
  rolled_back) in the same transaction.

Then the tasks whose owner died are resumed or rolled back (tasks.py, recover_tasks).
`check` verifies the store's invariants (invariants.py), the other half of `poolvisor check`.

Only rows whose lease has expired are touched (leases.py), never one this process holds: a live
process renews the leases of its use cases in flight, so neither a start nor the periodic sweep of
`poolvisor serve` (sweeper.py) undoes work another live process sharing the database is doing.
Each row is taken over with a compare-and-set on its lease first, so two sweepers never repair the
same row, and the repair itself runs under this process's (renewed) lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import PoolvisorError
from poolvisor.drivers.base import DriverWorkload
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.invariants import check_invariants
from poolvisor.services.leases import expired, utcnow
from poolvisor.services.records import DELETING, LOST, MIGRATING, PLACING, RUNNING, CheckReport
from poolvisor.services.tasks import TaskService, migration_task
from poolvisor.services.workloads import WorkloadService
from poolvisor.store.rows import HostRow, ProjectRow, WorkloadRow

MAX_PER_SWEEP = 500  # rows repaired per call; the next sweep continues
log = logging.getLogger("poolvisor.repair")


class RepairService(ServiceBase):
    """Crash repair (`run`, at start and by the sweep) and the invariant check."""

    def __init__(self, ctx: ServiceContext, workloads: WorkloadService, tasks: TaskService) -> None:
        super().__init__(ctx)
        self.lifecycle = workloads.lifecycle  # finishes or undoes what a dead process left
        self.tasks = tasks

    def check(self, now: datetime | None = None) -> CheckReport:
        """The invariants (invariants.py); `now` is the time leases are judged against."""
        return self._read(partial(check_invariants, now=now))

    def run(self, now: datetime | None = None) -> list[str]:
        """Resolve transient workloads whose lease expired by `now` (default: the current time; a
        later time lets tests and tools act as if time had passed). Returns what was done."""
        now = now or utcnow()
        held = self.leases.held()

        def find(s: Session) -> list[tuple[str, str | None, WorkloadRow]]:
            q = (select(ProjectRow.name, HostRow.name, WorkloadRow)
                 .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                 .outerjoin(HostRow, HostRow.id == WorkloadRow.host_id)
                 .where(WorkloadRow.state.in_((PLACING, DELETING, MIGRATING)), expired(now))
                 .order_by(WorkloadRow.id).limit(MAX_PER_SWEEP))
            return [(p, h, w) for p, h, w in s.execute(q).all() if w.id not in held]

        done = []
        for project, host, w in self._read(find):
            if not self._write(partial(self.leases.take, wid=w.id, state=w.state, now=now)):
                continue  # renewed by its owner, or taken by another sweeper, since we looked
            try:
                with self.leases.hold([w.id]):
                    msg = self._repair_one(project, host, w)
            except PoolvisorError as e:  # e.g. taken over again after a stall: the next sweep sees it
                log.warning("repair of workload %s/%s failed: %s", project, w.name, e.message)
                continue
            if msg:
                done.append(msg)
        return done + self.tasks.recover_tasks(now)

    def _repair_one(self, project: str, host: str | None, w: WorkloadRow) -> str | None:
        dw = self._driver_workload(project, w)
        if w.state == PLACING:
            return self._write(partial(self._repair_placing, project=project, w0=w, host=host, dw=dw))
        if w.state == DELETING:
            try:
                if host is not None:
                    lc = self.drivers.lifecycle(host)
                    # as the delete would have: what the guest wrote to its volumes' disks goes
                    # back into the volumes first (a guest already gone had them copied back
                    # before its driver delete); a copy-back that fails keeps the delete pending
                    if lc.exists(host, dw):
                        self.lifecycle.release_disks(w.id, DELETING)
                    lc.delete(host, dw)
            except PoolvisorError as e:  # the host does not answer, or a volume cannot take its bytes
                log.warning("interrupted delete of %s/%s not finished yet: %s", project, w.name, e.message)
                return None  # our lease lapses and a later sweep retries
            msg = f"workload {w.name}: interrupted delete finished"
            act = partial(self.lifecycle.finish_delete, wid=w.id, project=project, host=host)
            return self._write(partial(self._then_event, act=act, project=project, name=w.name, msg=msg))
        if w.state == MIGRATING:
            return self._repair_migrating(project, w, dw)
        return None

    def _repair_placing(self, s: Session, *, project: str, w0: WorkloadRow, host: str | None,
                        dw: DriverWorkload) -> str | None:
        alive = host is not None and self.drivers.lifecycle(host).exists(host, dw)
        w = s.get(WorkloadRow, w0.id)
        if w is None or not self.lifecycle.mine(w, PLACING):
            return None
        if alive:
            w.state, w.updated_at = RUNNING, datetime.now(UTC)
            self.leases.clear(w)
            msg = f"workload {w.name} confirmed running on {host} after an interrupted create"
        elif "ha" in (w.explanation or {}):  # an HA restart (services/ha.py): lost again, not deleted
            ledger.release(s, w)
            w.state, w.updated_at = LOST, datetime.now(UTC)
            self.leases.clear(w)
            msg = f"workload {w.name}: its restart on {host} was interrupted; lost, HA restarts it again"
        else:
            ledger.release(s, w)
            s.delete(w)
            msg = f"workload {w.name} rolled back: its create on {host} was interrupted"
        self._event(s, "workload.repaired", f"workload/{project}/{w.name}", msg, project=project)
        return msg

    def _repair_migrating(self, project: str, w: WorkloadRow, dw: DriverWorkload) -> str | None:
        t = self._read(lambda s: migration_task(s, w.id))  # the journal: where from, where to
        info = dict(t.journal) if t is not None else {}
        src, dst = str(info.get("from")), str(info.get("to"))
        back = (self.drivers.lifecycle(src).exists(src, dw)
                and not self.drivers.lifecycle(dst).exists(dst, dw))
        if back:
            act = partial(self.lifecycle.undo_migrate, project=project, name=w.name,
                          why="interrupted, repaired")
            msg = f"workload {w.name}: interrupted migration {src} -> {dst} undone"
        else:
            act = partial(self.lifecycle.finish_migrate, project=project, name=w.name, note=" (repaired)")
            msg = f"workload {w.name}: interrupted migration {src} -> {dst} confirmed"
        return self._write(partial(self._then_event, act=act, project=project, name=w.name, msg=msg))

    def _then_event(self, s: Session, act: Callable[[Session], bool], *, project: str, name: str,
                    msg: str) -> str | None:
        """Run one repair step and, when it acted, record it, in the same transaction."""
        if not act(s):
            return None
        self._event(s, "workload.repaired", f"workload/{project}/{name}", msg, project=project)
        return msg
