"""Start-up repair of use cases interrupted by a crash.

Single transactions are atomic, so a crash can only leave a use case open between two of its
transactions, visible as a transient workload state:

- "placing" (create): confirmed "running" if the driver reports the workload on its host, otherwise
  rolled back (allocation released, row removed). It was never acknowledged.
- "deleting" (delete): the driver delete is repeated (it is idempotent) and the row removed.
- "migrating" (migrate; the allocation already moved): if the driver positively shows the workload
  on the source and not on the target, the allocation moves back; otherwise the move is confirmed
  (the database is the authority when the driver knows nothing, e.g. a restarted sim).

Only rows older than `stale_after` seconds are touched, so a start never undoes a use case another
live process (sharing the database) has in flight.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.drivers.base import DriverError, DriverWorkload
from poolvisor.services import ledger
from poolvisor.services.lifecycle import LifecycleServices
from poolvisor.services.records import DELETING, MIGRATING, PLACING, RUNNING
from poolvisor.store.rows import HostRow, ProjectRow, WorkloadRow


class RepairServices(LifecycleServices):
    def repair(self, stale_after: float = 30.0) -> list[str]:
        """Resolve stale transient workloads; returns what was done, one line each."""
        cutoff = datetime.now(UTC) - timedelta(seconds=stale_after)

        def find(s: Session) -> list[tuple[int, str, str | None, WorkloadRow]]:
            q = (select(WorkloadRow.id, ProjectRow.name, HostRow.name, WorkloadRow)
                 .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                 .outerjoin(HostRow, HostRow.id == WorkloadRow.host_id)
                 .where(WorkloadRow.state.in_((PLACING, DELETING, MIGRATING)),
                        WorkloadRow.updated_at <= cutoff)
                 .order_by(WorkloadRow.id))
            return [(i, p, h, w) for i, p, h, w in s.execute(q).all()]

        done = []
        for _wid, project, host, w in self._read(find):
            dw = self._driver_workload(project, w)
            msg: str | None = None
            if w.state == PLACING:
                msg = self._write(partial(self._repair_placing, project=project, w0=w, host=host, dw=dw))
            elif w.state == DELETING:
                try:
                    if host is not None:
                        self.driver.delete(host, dw)
                except DriverError:
                    continue  # the host does not answer: try again at the next start
                self._write(partial(self._finish_delete, project=project, name=w.name, host=host))
                msg = f"workload {w.name}: interrupted delete finished"
            elif w.state == MIGRATING:
                msg = self._repair_migrating(project, w, dw)
            if msg:
                done.append(msg)
        return done

    def _repair_placing(self, s: Session, *, project: str, w0: WorkloadRow, host: str | None,
                        dw: DriverWorkload) -> str | None:
        alive = host is not None and self.driver.exists(host, dw)
        w = s.get(WorkloadRow, w0.id)
        if w is None or w.state != PLACING:
            return None
        if alive:
            w.state, w.updated_at = RUNNING, datetime.now(UTC)
            msg = f"workload {w.name} confirmed running on {host} after an interrupted create"
        else:
            ledger.release(s, w)
            s.delete(w)
            msg = f"workload {w.name} rolled back: its create on {host} was interrupted"
        self._event(s, "workload.repaired", f"workload/{project}/{w.name}", msg, project=project)
        return msg

    def _repair_migrating(self, project: str, w: WorkloadRow, dw: DriverWorkload) -> str:
        info = dict(w.constraints.get("migration") or {})
        src, dst = str(info.get("from")), str(info.get("to"))
        back = self.driver.exists(src, dw) and not self.driver.exists(dst, dw)
        if back:
            self._write(lambda s: self._undo_migrate(s, project, w.name, "interrupted, repaired on start"))
            msg = f"workload {w.name}: interrupted migration {src} -> {dst} undone"
        else:
            self._write(lambda s: self._finish_migrate(s, project, w.name, " (repaired on start)"))
            msg = f"workload {w.name}: interrupted migration {src} -> {dst} confirmed"
        self._write(lambda s: self._event(s, "workload.repaired", f"workload/{project}/{w.name}", msg,
                                          project=project))
        return msg
