"""Maintenance mode: drain a host (live-migrate everything off it) as one task, then keep it in
maintenance (no new placements) until it is undrained.

`submit_drain` sets the host `draining` in the transaction that queues the `drain` task, so no new
workload lands on it from the 202 on (placement and the ledger take only `up` hosts). The task
moves the workloads one at a time, largest first, each as a child `migrate` task through the
ordinary migration (lifecycle.py: the full placement pipeline with the workload's pool, labels,
group (anti-)affinity and the host's driver), so every constraint that holds at placement holds
for the drain and a drain never takes more than one migration slot. Its journal records the
workloads that moved and the ones that cannot move with the reason (the placement explanation);
a crash resumes it (tasks.py) with the workloads still on the host, and so does a server that
stops gracefully (`stopping`): the drain lets go between moves, its lease lapses, the next
server's repair queues it again.

Ends:
- everything moved: the host becomes `maintenance`, the task `succeeded`;
- some workloads cannot move: the host stays `draining` (nothing new lands there, what is left
  keeps running) and the task `failed` naming each stuck workload and why;
- cancelled: the migration in flight is aborted (its workload stays), the host returns to the
  state it had before the drain, the task ends `cancelled`.

`undrain` returns a draining or maintenance host to `up` (409 while a drain task runs on it).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, NoValidHostError, PoolvisorError
from poolvisor.domain.models import HostState, check_name
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.hosts import HostService
from poolvisor.services.records import (
    HOLDING_STATES,
    MIGRATING,
    RUNNING,
    STOPPED,
    SUSPENDED,
    TASK_ACTIVE,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_SUCCEEDED,
    HostRecord,
    TaskRecord,
)
from poolvisor.services.tasks import TaskService
from poolvisor.services.workloads import WorkloadService
from poolvisor.store.rows import HostRow, ProjectRow, TaskRow, WorkloadRow

DRAIN = "drain"
DRAINING, MAINTENANCE, UP = HostState.DRAINING.label, HostState.MAINTENANCE.label, HostState.UP.label
DRAINABLE = (UP, MAINTENANCE, DRAINING)  # a fenced or down host has nothing left to move
MOVABLE = (RUNNING, STOPPED, SUSPENDED)
ATTEMPTS = 3  # per workload: a driver failure or a passing conflict is tried again, after the others
WAIT_S = 0.2  # while workloads on the host are in a transient state (placing, migrating, deleting)
STALL_S = 600.0  # a drain waiting this long for transient workloads alone gives up


class MaintenanceService(ServiceBase):
    """Drain and undrain hosts (the `drain` task kind)."""

    def __init__(self, ctx: ServiceContext, hosts: HostService, tasks: TaskService,
                 workloads: WorkloadService) -> None:
        super().__init__(ctx)
        self.hosts = hosts
        self.tasks = tasks
        self.workloads = workloads
        # set to interrupt drains waiting for transient workloads (stop(): a process shutting down)
        self.stopping = threading.Event()

    # ---- requests -----------------------------------------------------------------------------
    def submit_drain(self, name: str) -> TaskRecord:
        """Set the host draining and queue its drain (404 unknown host; 409 fenced/down, or a
        drain already active on it)."""
        check_name("host", name)
        params: dict[str, Any] = {"host": name}

        def check(s: Session) -> None:
            h = self._host(s, name)
            if h.state not in DRAINABLE:
                raise ConflictError(f"host {name!r} is {h.state}: its workloads are gone, nothing to drain")
            busy = _active_drain(s, name)
            if busy is not None:
                raise ConflictError(f"host {name!r} is already being drained by task {busy}",
                                    detail={"task": busy})
            params["before"] = h.state  # the params are written after this check (a cancel restores it)
            _set(s, h, DRAINING, f"host {name} draining (was {h.state})")

        return self.tasks.submit(DRAIN, None, f"host/{name}", params, check)

    def undrain(self, name: str) -> HostRecord:
        """Return a draining or maintenance host to up (409 otherwise, or while a drain runs)."""
        check_name("host", name)

        def tx(s: Session) -> None:
            h = self._host(s, name)
            busy = _active_drain(s, name)
            if busy is not None:
                raise ConflictError(f"host {name!r} is being drained by task {busy}; cancel it first "
                                    f"(poolvisor task cancel {busy})", detail={"task": busy})
            if h.state not in (DRAINING, MAINTENANCE):
                raise ConflictError(f"host {name!r} is {h.state}, not draining or in maintenance")
            _set(s, h, UP, f"host {name} back in service (was {h.state})")

        self._write(tx)
        return self.hosts.get_host(name)

    def cancelled_drain(self, s: Session, t: TaskRow) -> None:
        """A queued drain cancelled: the host returns to the state it had before."""
        _restore(s, str(t.params["host"]), str((t.params or {}).get("before", UP)))

    # ---- the task -------------------------------------------------------------------------------
    def run_drain(self, task_id: int) -> None:
        """The `drain` task handler (registered on TaskService.handlers)."""
        params = self.tasks.get_task(task_id).params
        name, before = str(params["host"]), str(params.get("before", UP))
        journal = self.tasks.journal(task_id)
        moved: list[str] = list(journal.get("moved", []))
        tries: dict[str, int] = {}
        stuck: dict[str, dict[str, Any]] = {}
        total = int(journal.get("total", 0)) or len(self._on_host(name)[1]) or 1
        if "total" not in journal:
            self.tasks.task_note(task_id, f"draining host {name}: {total} workload(s) to move",
                                 journal={"total": total, "moved": moved})
        idle_since: float | None = None
        while True:
            if self.stopping.is_set():  # the server stops: the drain goes on in the next one
                return None
            if self.tasks.cancel_requested(task_id):
                return self._cancel(task_id, name, before, moved)
            state, on_host = self._on_host(name)
            if state != DRAINING:
                return self._end(task_id, TASK_FAILED, name, moved, stuck, _changed(name, state))
            if not on_host:
                break
            todo = [w for w in on_host if w["state"] in MOVABLE and w["key"] not in stuck]
            if not todo:
                if all(w["key"] in stuck for w in on_host):
                    break  # only stuck workloads left
                idle_since = idle_since or time.monotonic()  # placing/migrating/deleting: they end soon
                if time.monotonic() - idle_since > STALL_S:
                    for w in on_host:
                        stuck.setdefault(w["key"], {"workload": w["key"], "reason": f"still {w['state']} "
                                                    f"after {STALL_S:g} s", "explanation": None})
                    break
                if self.stopping.wait(WAIT_S):  # shutting down: left running, its lease lapses and
                    return None  # the repair of the next server resumes it (tasks.recover_tasks)
                continue
            idle_since = None
            w = min(todo, key=lambda x: tries.get(x["key"], 0))  # a failed one again after the others
            err = self._move(task_id, w["key"])
            if err is None:
                moved.append(w["key"])
                self.tasks.task_note(task_id, f"moved {w['key']} ({len(moved)}/{total})",
                                     progress=min(0.99, len(moved) / total), journal={"moved": moved})
                continue
            if self.tasks.cancel_requested(task_id):
                return self._cancel(task_id, name, before, moved)
            tries[w["key"]] = tries.get(w["key"], 0) + 1
            final = isinstance(err, NoValidHostError) or tries[w["key"]] >= ATTEMPTS
            self.tasks.task_note(task_id, f"{w['key']} cannot move{'' if final else ' (will retry)'}: "
                                 f"{err.message}")
            if final:
                stuck[w["key"]] = {"workload": w["key"], "reason": err.message,
                                   "explanation": err.detail if isinstance(err, NoValidHostError) else None}
                self.tasks.task_note(task_id, f"{w['key']} stuck", journal={"stuck": list(stuck.values())})
        if stuck:
            listing = "; ".join(f"{v['workload']}: {v['reason']}" for v in stuck.values())
            return self._end(task_id, TASK_FAILED, name, moved, stuck,
                             f"host {name} stays draining: {len(stuck)} workload(s) cannot move: {listing}")

        def finish(s: Session) -> bool:
            h = self._host(s, name)
            t = self.tasks.mine_task(s, task_id)
            if h.state != DRAINING or t is None:
                return False
            _set(s, h, MAINTENANCE, f"host {name} in maintenance: drained ({len(moved)} workload(s) moved)")
            self.tasks.end_in(s, t, TASK_SUCCEEDED, result=_result(name, MAINTENANCE, moved, {}))
            return True

        if not self._write(finish):
            state = self._on_host(name)[0]
            self._end(task_id, TASK_FAILED, name, moved, stuck, _changed(name, state))
        return None

    def _move(self, task_id: int, key: str) -> PoolvisorError | None:
        """One workload off the host as a child migrate task (placement chooses the target)."""
        project, name = key.split("/", 1)
        cid = self.tasks.start_task("migrate", project, f"workload/{key}",
                                    {"project": project, "name": name, "host": None}, parent_id=task_id)
        with self.leases.hold_tasks([cid]):
            try:
                self.workloads.migrate_workload(project, name, None, task_id=cid)
            except PoolvisorError as e:
                self.tasks.end_task(cid, TASK_FAILED, error=e.message)  # no-op once rolled back
                return e
        return None

    def _cancel(self, task_id: int, name: str, before: str, moved: list[str]) -> None:
        def tx(s: Session) -> None:
            t = self.tasks.mine_task(s, task_id)
            if t is None:
                return
            _restore(s, name, before)
            self.tasks.end_in(s, t, TASK_CANCELLED, result=_result(name, before, moved, {}),
                              error=f"cancelled after moving {len(moved)} workload(s); host {name} is "
                                    f"{before} again")

        self._write(tx)

    def _end(self, task_id: int, state: str, name: str, moved: list[str], stuck: dict[str, dict[str, Any]],
             error: str) -> None:
        host_state = self._on_host(name)[0]
        self.tasks.end_task(task_id, state, result=_result(name, host_state, moved, stuck), error=error)

    def _on_host(self, name: str) -> tuple[str, list[dict[str, Any]]]:
        """(host state, its workloads largest first: key `project/name`, state)."""
        def tx(s: Session) -> tuple[str, list[dict[str, Any]]]:
            h = self._host(s, name)
            rows = s.execute(select(ProjectRow.name, WorkloadRow.name, WorkloadRow.state, WorkloadRow.demand)
                             .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                             .where(WorkloadRow.host_id == h.id, WorkloadRow.state.in_(HOLDING_STATES))).all()
            ws = [{"key": f"{p}/{n}", "state": st,
                   "size": (float(d.get("memory_mib", 0)), float(d.get("vcpu", 0)))} for p, n, st, d in rows]
            ws.sort(key=lambda w: (w["state"] != MIGRATING, w["size"], w["key"]), reverse=True)
            return h.state, ws

        return self._read(tx)


def _set(s: Session, h: HostRow, state: str, message: str) -> None:
    """The host's new state in the caller's transaction (the generation moves: placement reloads it)."""
    old = h.state
    s.execute(update(HostRow).where(HostRow.id == h.id).values(state=state)
              .execution_options(synchronize_session=False))
    ledger.bump(s, h.id)
    ServiceBase._event(s, f"host.{state}" if state != UP else "host.undrained", f"host/{h.name}", message,
                       data={"from": old, "to": state})
    s.expire(h)


def _restore(s: Session, name: str, before: str) -> None:
    h = s.scalars(select(HostRow).filter_by(name=name)).first()
    if h is not None and h.state == DRAINING:
        back = before if before in (UP, MAINTENANCE) else UP
        _set(s, h, back, f"host {name} drain cancelled: {back} again")


def _active_drain(s: Session, name: str) -> int | None:
    return s.scalar(select(TaskRow.id).where(TaskRow.kind == DRAIN, TaskRow.subject == f"host/{name}",
                                             TaskRow.state.in_(TASK_ACTIVE)).limit(1))


def _changed(name: str, state: str) -> str:
    return f"host {name} was set {state} during the drain; it was not put in maintenance"


def _result(name: str, state: str, moved: list[str], stuck: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"host": name, "host_state": state, "moved": list(moved), "stuck": list(stuck.values())}
