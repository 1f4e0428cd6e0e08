"""Start-up repair of use cases interrupted by a crash.

Single transactions are atomic, so only the gap between create's two transactions can be left
open: a workload in state "placing" whose creator died. If the driver reports the workload on its
host it is confirmed ("running"); otherwise its allocation is released and the row removed. Only
rows older than `stale_after` seconds are touched, so a start never undoes a creation another live
process (sharing the database) has in flight.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.records import PLACING, RUNNING
from poolvisor.store.rows import HostRow, ProjectRow, WorkloadRow


class RepairServices(ServiceBase):
    def repair(self, stale_after: float = 30.0) -> list[str]:
        """Resolve stale 'placing' workloads; returns what was done, one line each."""
        cutoff = datetime.now(UTC) - timedelta(seconds=stale_after)

        def find(s: Session) -> list[tuple[int, str, str | None, str, str, dict[str, float]]]:
            q = (select(WorkloadRow.id, ProjectRow.name, HostRow.name, WorkloadRow.name, WorkloadRow.kind,
                        WorkloadRow.demand)
                 .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                 .outerjoin(HostRow, HostRow.id == WorkloadRow.host_id)
                 .where(WorkloadRow.state == PLACING, WorkloadRow.updated_at <= cutoff))
            return list(s.execute(q))

        done = []
        for wid, project, host, name, kind, demand in self._read(find):
            from poolvisor.drivers.base import DriverWorkload

            alive = host is not None and self.driver.exists(
                host, DriverWorkload(f"{project}/{name}", kind, {k: float(v) for k, v in demand.items()}))

            def fix(s: Session, wid: int = wid, project: str = project, name: str = name,
                    host: str | None = host, alive: bool = alive) -> str | None:
                w = s.get(WorkloadRow, wid)
                if w is None or w.state != PLACING:
                    return None
                if alive:
                    w.state, w.updated_at = RUNNING, datetime.now(UTC)
                    msg = f"workload {name} confirmed running on {host} after an interrupted create"
                else:
                    ledger.release(s, w)
                    s.delete(w)
                    msg = f"workload {name} rolled back: its create on {host} was interrupted"
                self._event(s, "workload.repaired", f"workload/{project}/{name}", msg, project=project)
                return msg

            msg = self._write(fix)
            if msg:
                done.append(msg)
        return done
