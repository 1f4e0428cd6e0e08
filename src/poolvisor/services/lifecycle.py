"""Lifecycle of placed workloads: actions (start/stop/suspend/resume), delete, migrate.

Delete and migrate span a driver call, so each is two transactions around it with a transient
state in between ('deleting', 'migrating'), leased to this process while the driver works
(leases.py); the repair sweep resolves it once the lease has expired (the process died). Every
finishing transaction acts only while it still owns the lease.
Migration re-runs the full placement pipeline (the workload's pool and label constraints kept,
the current host excluded, only hosts of the source's driver) and commits with the same
generation guard as creation; a declared workload is sized again for the target host's pool by
the create's rule (services/shares.py), and a move undone restores the source's claim. The
driver's migration is an operation: its handle's progress goes into the task's progress, and a
cancel of the task (tasks.py) aborts it; the workload then stays on its source and the task ends
cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import numpy as np
from sqlalchemy import Float, Integer, String, Table, bindparam, delete, exists, select, text, update
from sqlalchemy.orm import Session

from poolvisor.domain.errors import ConflictError, InvalidInputError, PoolvisorError
from poolvisor.domain.models import GroupPolicy, check_name
from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload
from poolvisor.drivers.protocols import MigrationHandle, MigrationProgress, MigrationState
from poolvisor.policies.placement import Decision, Request, place
from poolvisor.policies.placement.pipeline import require_host
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.context import ServiceContext
from poolvisor.services.flow import Call, Flow, Tx, run_sync
from poolvisor.services.gpu_cache import chosen_devices, fit_devices
from poolvisor.services.networks import release_nics
from poolvisor.services.placement_cache import group_key
from poolvisor.services.records import (
    DELETING,
    LOST,
    MIGRATING,
    RUNNING,
    STOPPED,
    SUSPENDED,
    TASK_ACTIVE,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_ROLLED_BACK,
    TASK_SUCCEEDED,
    TaskRecord,
    WorkloadRecord,
)
from poolvisor.services.shares import Sizing, apply, first_fit, on_host, sizing, spec_of
from poolvisor.services.tasks import IMAGE_KINDS, MIGRATE, TaskService, migration_task
from poolvisor.services.workloads import ACTIONS, PLACE_DEADLINE_S, TRANSIENT, WorkloadService, _Spec
from poolvisor.store.prepared import Prepared
from poolvisor.store.retry import Stale, with_retry
from poolvisor.store.rows import (
    GpuAllocationRow,
    GroupRow,
    HostRow,
    NicRow,
    PoolRow,
    ProjectRow,
    TaskRow,
    VolumeAttachmentRow,
    WorkloadRow,
)

POLL_S = 0.2  # how often a running migration's progress is written into its task
_W, _P, _H = (cast(Table, r.__table__) for r in (WorkloadRow, ProjectRow, HostRow))
_VA, _NICS, _GPU_ALLOC = (cast(Table, r.__table__) for r in (VolumeAttachmentRow, NicRow, GpuAllocationRow))
# the workload to delete and whether it has volumes (most have none: their disks are not looked for)
_DELETE_ROW = (select(_W.c.id, _W.c.state, _W.c.kind, _W.c.demand, _W.c.host_id, _H.c.name.label("host"),
                      exists().where(_VA.c.workload_id == _W.c.id).label("volumes"))
               .select_from(_W.join(_P, _P.c.id == _W.c.project_id).outerjoin(_H, _H.c.id == _W.c.host_id))
               .where(_P.c.name == bindparam("p"), _W.c.name == bindparam("n")))
_TO_DELETE = Prepared(_DELETE_ROW)
# the workload as the finishing transaction sees it, and whether it holds NICs or GPU devices (most
# hold neither: the ledger and the NIC release then skip their lookups)
_TO_FINISH = Prepared(select(_W.c.name, _W.c.state, _W.c.lease_owner, _W.c.host_id, _W.c.group_id,
                             exists().where(_NICS.c.workload_id == _W.c.id).label("nics"),
                             exists().where(_GPU_ALLOC.c.workload_id == _W.c.id).label("gpus")).where(
    _W.c.id == bindparam("w")))
# its volumes' attachments, read only when the EXISTS above says it has some
_HAS_VOLUMES = Prepared(select(_VA.c.volume_id, _VA.c.detaching_since)
                        .where(_VA.c.workload_id == bindparam("w")))
DETACH_STALE_S = 600.0  # a detach's mark older than this was left by a dead process (volumes.py detach)
_DELETE_WORKLOAD = Prepared(delete(_W).where(_W.c.id == bindparam("w")))
# PostgreSQL: the whole finish of a plain delete in one statement (two round trips fewer for every
# delete than the read above, the ledger's release and the DELETE): the row removed only while it
# is still 'deleting' under this process's lease, holds no NIC and no GPU device, and has all its
# allocations on its host; then its allocation rows, its host's count and generation, then the
# host's resources (reading the host's result: locked after it, the ledger's order). The rows given
# back, each with the row's name and group and the host's new generation, or one row without a
# resource when it held none. No row: the statements above run (and decide what to answer).
_FINISH_PG = Prepared(text("""
    WITH w AS (DELETE FROM workloads
               WHERE id = :w AND state = :state AND lease_owner = :owner AND host_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM nics WHERE nics.workload_id = :w)
                 AND NOT EXISTS (SELECT 1 FROM gpu_allocations g WHERE g.workload_id = :w)
                 AND NOT EXISTS (SELECT 1 FROM allocations a
                                 WHERE a.workload_id = :w AND a.host_id <> workloads.host_id)
               RETURNING name, host_id, group_id),
    d AS (DELETE FROM allocations WHERE workload_id = :w AND EXISTS (SELECT 1 FROM w)
          RETURNING resource, amount),
    h AS (UPDATE hosts SET generation = generation + 1, workloads = workloads - 1
          WHERE id = (SELECT host_id FROM w)
          RETURNING generation),
    r AS (UPDATE host_resources AS hr SET allocated = hr.allocated - d.amount FROM d
          WHERE hr.host_id = (SELECT host_id FROM w) AND hr.resource = d.resource AND EXISTS (SELECT 1 FROM h)
          RETURNING hr.resource)
    SELECT w.name, w.host_id, w.group_id, (SELECT generation FROM h) AS gen, d.resource, d.amount
    FROM w LEFT JOIN d ON true
    """).columns(name=String, host_id=Integer, group_id=Integer, gen=Integer, resource=String, amount=Float))
_MARK_DELETING = Prepared(update(_W).where(_W.c.id == bindparam("w"), _W.c.state == bindparam("before"))
                          .values(state=DELETING, updated_at=bindparam("now"),
                                  lease_owner=bindparam("lease_owner"),
                                  lease_expires=bindparam("lease_expires")))

# PostgreSQL: the read and the mark in one statement (a round trip fewer for every delete). The
# UPDATE re-checks the row's state against what the subquery read (PostgreSQL re-evaluates it on
# the row's latest version after waiting for its lock), so a row that changed meanwhile is not
# marked: no row comes back, and the two statements above run (and raise what they raise).
_OLD = _DELETE_ROW.where(_W.c.state.not_in(sorted(TRANSIENT))).subquery("old")
_MARK_BY_NAME = Prepared(update(_W).where(_W.c.id == _OLD.c.id, _W.c.state == _OLD.c.state)
                         .values(state=DELETING, updated_at=bindparam("now"),
                                 lease_owner=bindparam("lease_owner"),
                                 lease_expires=bindparam("lease_expires"))
                         .returning(_OLD.c.id, _OLD.c.state, _OLD.c.kind, _OLD.c.demand, _OLD.c.host_id,
                                    _OLD.c.host, _OLD.c.volumes))


class WorkloadLifecycle(ServiceBase):
    """The workload use cases past creation; WorkloadService (workloads.py) exposes them."""

    def __init__(self, ctx: ServiceContext, workloads: WorkloadService, tasks: TaskService) -> None:
        super().__init__(ctx)
        self.workloads = workloads
        self.tasks = tasks
        # before the driver deletes a guest: its attached volumes' disks let go, what the guest
        # wrote copied back into the volumes (facade.py: VolumeService.release_disks)
        self.release_disks: Callable[[int, str], None] = lambda _wid, _state: None

    def delete_workload(self, project: str, name: str) -> None:
        run_sync(self.ctx, self.workloads.batcher, self.delete_flow(project, name))

    def delete_flow(self, project: str, name: str) -> Flow[None]:
        """Mark 'deleting' (allocation kept), delete through the driver, then release and remove.
        A crash in between leaves a 'deleting' row that the repair sweep finishes (repair.py).
        A flow (services/flow.py): run on the caller's thread, or by the server's writer."""

        def mark(s: Session) -> tuple[int, str | None, DriverWorkload, str, bool, int | None]:
            # prepared statements (store/prepared.py): this runs for every delete
            w = None
            if s.get_bind().dialect.name == "postgresql":
                w = _MARK_BY_NAME.first(s, {"p": project, "n": name, "now": datetime.now(UTC),
                                            **self.leases.stamp_values()})
            if w is None:
                w = _TO_DELETE.first(s, {"p": project, "n": name})
                if w is None:
                    self._workload(s, project, name)  # raises the NotFoundError (project or workload)
                assert w is not None
                if w.state in TRANSIENT:
                    raise ConflictError(f"workload {name!r} is {w.state}; retry")
                if _MARK_DELETING.rowcount(s, {"w": w.id, "before": w.state, "now": datetime.now(UTC),
                                               **self.leases.stamp_values()}) != 1:
                    raise Stale()  # changed since it was read (another replica): Store.run reads again
            dw = DriverWorkload(f"{project}/{name}", w.kind, {str(k): float(v) for k, v in w.demand.items()})
            # whether it has volumes, read with the row: most workloads have none (their
            # attachments are then not read), and looking for their disks in a read transaction
            # of its own cost every delete a BEGIN and a COMMIT
            if not w.volumes:
                return w.id, w.host, dw, w.state, False, w.host_id
            atts = _HAS_VOLUMES.all(s, {"w": w.id})
            now = datetime.now(UTC)
            if any(a.detaching_since is not None and
                   (now - as_utc(a.detaching_since)).total_seconds() < DETACH_STALE_S for a in atts):
                # a detach is copying a disk back (volumes.py): both would unplug it; the mark's
                # guarded UPDATE above and the detach's conflict on the row, so one sees the other
                raise ConflictError(f"workload {name!r}: a volume of it is being detached; retry")
            return w.id, w.host, dw, w.state, bool(atts), w.host_id

        wid, host, dw, before, volumes, host_id = yield Tx(mark)  # may share a commit (store/group.py)
        with self.leases.hold([wid]):
            if host is not None:
                try:
                    if volumes:  # (a volume's disks: never on the writer thread)
                        yield Call(partial(self.release_disks, wid, before))
                    yield Call(partial(self._driver_delete, host, dw), host, "delete")
                except PoolvisorError:  # the driver, or a volume that could not take its bytes back
                    yield Tx(lambda s: self.restore_state(s, wid, DELETING, before), grouped=False)
                    raise
            released: list[tuple[int, int, dict[str, float], int | None]] = []

            def finish(s: Session) -> None:
                before = len(s.info.get(ledger.RELEASED, ()))  # a group's session is shared: ours only
                self.finish_delete(s, wid=wid, project=project, host=host)
                released[:] = s.info.get(ledger.RELEASED, [])[before:]

            # its host's row, which the release locks, declared: a group takes it in id order
            yield Tx(finish, hosts=(host_id,) if host_id is not None else ())
            for h_id, gen, amounts, group_id in released:  # committed: the view follows
                if group_id is None:  # (a group member's count is reloaded by the next refresh)
                    self.cache.written(h_id, gen, amounts, None, key=f"{project}/{name}", release=True)

    def _driver_delete(self, host: str, dw: DriverWorkload) -> None:
        self.drivers.lifecycle(host).delete(host, dw)

    def finish_delete(self, s: Session, *, wid: int, project: str, host: str | None) -> bool:
        # prepared statements, no ORM row: this runs for every delete, and loading the row
        # decoded its JSON columns (the placement explanation) only to delete it
        if s.get_bind().dialect.name == "postgresql" and self._finish_pg(s, wid, project, host):
            return True
        w = _TO_FINISH.first(s, {"w": wid})
        if w is None or not self.mine(w, DELETING):
            return False  # already removed (by a repair that took over): the delete is done
        name = w.name
        ledger.release_ids(s, wid, w.host_id, w.group_id, gpus=bool(w.gpus))
        if w.nics:
            release_nics(s, [wid])  # before the row goes (no cascade from workloads to NICs)
        _DELETE_WORKLOAD.rowcount(s, {"w": wid})
        self._event(s, "workload.deleted", f"workload/{project}/{name}", f"workload {name} deleted",
                    project=project, data={"host": host})
        return True

    def _finish_pg(self, s: Session, wid: int, project: str, host: str | None) -> bool:
        """finish_delete in one statement (`_FINISH_PG`); False: it did not apply, nothing changed."""
        s.flush()
        rows = _FINISH_PG.all(s, {"w": wid, "state": DELETING, "owner": self.leases.owner})
        if not rows:
            return False
        first = rows[0]
        if first.gen is not None:  # (its host row is there: the foreign key keeps it while the row was)
            amounts = {r.resource: r.amount for r in rows if r.resource is not None}
            s.info.setdefault(ledger.RELEASED, []).append((first.host_id, int(first.gen), amounts,
                                                           first.group_id))
        self._event(s, "workload.deleted", f"workload/{project}/{first.name}",
                    f"workload {first.name} deleted", project=project, data={"host": host})
        return True

    def restore_state(self, s: Session, wid: int, expected: str, new: str) -> None:
        w = s.get(WorkloadRow, wid)
        if w is not None and self.mine(w, expected):
            w.state, w.updated_at = new, datetime.now(UTC)
            self.leases.clear(w)

    def mine(self, w: Any, state: str) -> bool:  # a WorkloadRow, or a Core row with state, lease_owner, name
        """Is `w` still in the transient `state` under this process's lease? False when it has left
        that state; ConflictError when another process took the lease over (it resolves the row)."""
        if w.state != state:
            return False
        if not self.leases.owns(w):
            raise ConflictError(f"workload {w.name!r}: the {state} use case outlived its lease and is "
                                "being repaired; check its state")
        return True

    def workload_action(self, project: str, name: str, action: str) -> WorkloadRecord:
        if action not in ACTIONS:
            raise InvalidInputError(f"unknown action {action!r}; allowed: {', '.join(ACTIONS)}")
        sources, target = ACTIONS[action]

        def look(s: Session) -> tuple[str, Any, str]:
            w, _p = self._workload(s, project, name)
            if w.state not in sources:
                raise ConflictError(f"cannot {action} workload {name!r} in state {w.state}")
            host = s.get(HostRow, w.host_id) if w.host_id is not None else None
            if host is None:
                raise ConflictError(f"workload {name!r} has no host")
            return host.name, self._driver_workload(project, w), w.state

        host, dw, before = self._read(look)
        lc = self.drivers.lifecycle(host)
        run = {"start": lc.start, "stop": lc.stop, "suspend": lc.suspend, "resume": lc.resume}[action]
        run(host, dw)

        def tx(s: Session) -> WorkloadRecord:
            w, _p = self._workload(s, project, name)
            r = s.execute(update(WorkloadRow).where(WorkloadRow.id == w.id, WorkloadRow.state == before)
                          .values(state=target, updated_at=datetime.now(UTC)))
            if r.rowcount != 1:  # type: ignore[attr-defined]
                raise ConflictError(f"workload {name!r} changed state concurrently")
            self._event(s, f"workload.{action}", f"workload/{project}/{name}",
                        f"workload {name}: {action} ({before} -> {target})", project=project)
            s.flush()
            s.expire(w)
            return self._workload_records(s, [w])[0]

        return self._write(tx)

    def migrate_workload(self, project: str, name: str, host: str | None = None, *,
                         task_id: int | None = None) -> WorkloadRecord:
        """Move a workload to `host` (checked by the full filter pipeline) or to the best other host.

        The move is journaled in a `migrate` task (tasks.py): `task_id`, the running task an
        executor (or a consolidation) runs it for; None, a task created and run here, at once."""
        if host is not None:
            check_name("host", host)
        if task_id is None:
            wid = self._read(lambda s: self.migration_source(s, project, name, host)[0].id)
            task_id = self.tasks.start_task(MIGRATE, project, f"workload/{project}/{name}",
                                            {"project": project, "name": name, "host": host}, workload_id=wid)
            with self.leases.hold_tasks([task_id]):
                try:
                    return self.migrate_workload(project, name, host, task_id=task_id)
                except PoolvisorError as e:
                    self.tasks.end_task(task_id, TASK_FAILED, error=e.message)  # no-op once rolled back
                    raise
        return with_retry(lambda: self._migrate_once(project, name, host, task_id),
                          deadline_s=PLACE_DEADLINE_S,
                          conflict="too many concurrent changes; the workload was not migrated, retry")

    def submit_migrate(self, project: str, name: str, host: str | None = None) -> TaskRecord:
        """Validate the move (404/409 at once, as the synchronous call would) and queue it."""
        check_name("project", project)
        check_name("workload", name)
        if host is not None:
            check_name("host", host)
        w, src = self._read(lambda s: self.migration_source(s, project, name, host)[:2])
        # 409 at once when the host's driver cannot migrate, or not this workload as it is (nothing queued)
        self.drivers.migration(src).check_migration(self._driver_workload(project, w),
                                                    self.drivers.binding(src))
        return self.tasks.submit(MIGRATE, project, f"workload/{project}/{name}",
                                 {"project": project, "name": name, "host": host},
                                 lambda s: self.migration_source(s, project, name, host)[0].id)

    def run_migrate_task(self, task_id: int) -> None:
        """The `migrate` task handler (registered on TaskService.handlers)."""
        p = self.tasks.get_task(task_id).params
        self.migrate_workload(str(p["project"]), str(p["name"]), p.get("host"), task_id=task_id)

    def migration_source(self, s: Session, project: str, name: str,
                          target: str | None) -> tuple[WorkloadRow, str, int | None, str | None]:
        """(workload, source host, pool id, pool) of a movable workload; 404/409 otherwise."""
        w, _p = self._workload(s, project, name)
        if w.state not in (RUNNING, STOPPED, SUSPENDED) or w.host_id is None:
            raise ConflictError(f"cannot migrate workload {name!r} in state {w.state}")
        src = s.get(HostRow, w.host_id)
        assert src is not None
        busy = s.scalars(select(TaskRow.kind).where(
            TaskRow.workload_id == w.id, TaskRow.state.in_(TASK_ACTIVE),
            TaskRow.kind.in_(IMAGE_KINDS))).first()
        if busy is not None:
            raise ConflictError(f"workload {name!r} has a {busy} task in progress; retry when it ends")
        if target is not None:
            tgt = self._host(s, target)
            if target == src.name:
                raise ConflictError(f"workload {name!r} is already on host {target!r}")
            if tgt.driver != src.driver:
                raise ConflictError(f"host {target} is not run by driver {src.driver!r} like {src.name}: a "
                                    "workload migrates only between hosts of one driver")
        pool = w.constraints.get("pool")
        pool_id = s.scalar(select(PoolRow.id).filter_by(name=pool)) if pool else None
        return w, src.name, pool_id, pool

    def _migrate_once(self, project: str, name: str, target: str | None, task_id: int) -> WorkloadRecord:
        def look(s: Session) -> tuple[WorkloadRow, str, int | None, str | None, Sizing | None]:
            w, src, pool_id, pool = self.migration_source(s, project, name, target)
            # a declaration is sized again for its new host's pool, by the create's rule (shares.py)
            sz = sizing(s, pool_id, dict(w.demand), *spec_of(w.resource_spec)) if w.resource_spec else None
            return w, src, pool_id, pool, sz

        w, src, pool_id, pool, sz = self._read(look)
        src_b = self.drivers.binding(src)
        # 409 when the source's driver cannot migrate (or not this workload as it is): nothing moved yet
        self.drivers.migration(src).check_migration(self._driver_workload(project, w), src_b)
        others = set(self._read(lambda s: s.scalars(select(HostRow.name).where(
            HostRow.driver != src_b.driver)).all()))  # a guest moves only between hosts of one driver
        c = w.constraints
        spec = _Spec(project, w.project_id, name, w.kind, w.flavor,
                     {str(k): float(v) for k, v in w.demand.items()}, w.priority, w.group_id, None, None,
                     dict(c.get("required_labels") or {}), dict(c.get("forbidden_labels") or {}),
                     pool_id, pool)
        if w.group_id is not None:
            g = self._read(lambda s: s.get(GroupRow, w.group_id))
            if g is not None:
                spec = replace(spec, group=g.name, group_policy=GroupPolicy(g.policy))
        spec = apply(spec, sz)
        with self.cache.lock:
            snap = self._read(self.cache.refresh)
            st = snap.state
            mask = np.ones(st.n, dtype=bool) if spec.pool_id is None else snap.pool_of[: st.n] == spec.pool_id
            mask[st.host_index(src)] = False
            for o in others:
                mask[st.host_index(o)] = False
            if target is not None:
                only = np.zeros(st.n, dtype=bool)
                only[st.host_index(target)] = True
                mask &= only

            def attempt(sub: _Spec, fallback_pool: int | None) -> tuple[Request, Decision]:
                on = mask if fallback_pool is None else mask & (snap.pool_of[: st.n] == fallback_pool)
                req = Request(name=f"{project}/{name}", demand=st.resources.vector(sub.demand),
                              required_labels=sub.required, forbidden_labels=sub.forbidden,
                              group=group_key(project, sub.group) if sub.group is not None else None,
                              group_policy=sub.group_policy, allowed_hosts=np.flatnonzero(on))
                req = fit_devices(self.policy, st, req)
                return req, place(st, req, self.policy)

            # the create's fallback loop: a declaration naming no pool whose limit fits no host
            # moves to a pool whose policy sets aside less; the claim is the target pool's amount
            spec, (req, decision) = first_fit(spec, attempt, lambda a: a[1].host_index is not None)
            h = require_host(decision)
            spec = on_host(spec, snap.pool_of, h)
            dst_id, dst_gen = snap.ids[h], int(snap.gens[h])
            gpus = chosen_devices(self.policy, st, req, h)
        dst = decision.host
        assert dst is not None

        def claim(s: Session) -> None:
            # the allocation moves now (state 'migrating', the way back recorded); the driver follows
            cur, _p = self._workload(s, project, name)
            if cur.id != w.id or cur.state != w.state or cur.host_id != w.host_id:
                raise Stale()
            ledger.release(s, cur)
            ledger.claim(s, dst_id, dst_gen, spec.demand, cur.id, gpus)
            t = self.tasks.mine_task(s, task_id)
            if t is None:
                raise ConflictError(f"task {task_id} is no longer run by this process")
            cur.host_id, cur.state, cur.updated_at = dst_id, MIGRATING, datetime.now(UTC)
            # the journal (the way back: host, state, the claim and its sizing) goes into the task,
            # in the transaction that moves the allocation
            t.workload_id = cur.id
            back: dict[str, Any] = {"from": src, "to": dst, "state": w.state,
                                    "demand": {str(k): float(v) for k, v in cur.demand.items()}}
            was = dict(cur.explanation or {})
            if "sized_by" in was:
                back["sized_by"] = was["sized_by"]
            self.tasks.note_in(t, f"moving {name}: {src} -> {dst}", progress=0.05, journal=back)
            cur.demand = dict(spec.demand)  # a declaration claims what the target's pool sets aside
            cur.explanation = {**decision.explanation.to_dict(),
                               **({"sized_by": spec.sizing.policy} if spec.sizing is not None else {})}
            self.leases.stamp(cur)

        self.ctx.write_once(claim)  # Stale: migrate_workload decides again
        with self.leases.hold([w.id]):
            try:
                p = self._drive_migration(task_id, self._driver_workload(project, w), src, dst)
            except DriverRefusal as refusal:  # 409: refused before anything moved; back where it was
                why = refusal.message
                self._write(lambda s: self.undo_migrate(s, project, name, why))
                raise
            except DriverError as e:
                p = MigrationProgress(MigrationState.FAILED, error=e.message)
            if p.state is MigrationState.ABORTED:
                self._write(lambda s: self.undo_migrate(s, project, name, "cancelled", TASK_CANCELLED))
                raise ConflictError(f"migration of {name!r} cancelled; it stays on {src}")
            if p.state is not MigrationState.COMPLETED:
                why = p.error or "the driver gave no reason"
                self._write(lambda s: self.undo_migrate(s, project, name, why))
                raise DriverError(f"migration of {name!r} failed: {why}")
            self._write(lambda s: self.finish_migrate(s, project, name, downtime_ms=p.downtime_ms))
        return self.workloads.get_workload(project, name)

    def _drive_migration(self, task_id: int, dw: DriverWorkload, src: str, dst: str) -> MigrationProgress:
        """Start the driver's migration and follow its handle to the end, writing its progress
        into the task and aborting it when the task's cancel is requested."""
        src_b, dst_b = self.drivers.binding(src), self.drivers.binding(dst)
        handle: MigrationHandle = self.drivers.migration(src).start_migration(dw, src_b, dst_b, live=True)
        shown = -1
        while True:
            p = handle.wait(POLL_S)
            if p.done:
                return p
            step = int(p.fraction * 4)  # a log entry per quarter, the progress at every poll
            name = dw.key.split("/", 1)[-1]
            msg = f"moving {name}: {src} -> {dst} {100 * p.fraction:.0f} %" if step != shown else None
            shown = step
            if self.tasks.task_progress(task_id, 0.05 + 0.9 * p.fraction, msg):
                handle.abort()

    def finish_migrate(self, s: Session, project: str, name: str, note: str = "",
                       downtime_ms: float | None = None) -> bool:
        w, _p = self._workload(s, project, name)
        t = migration_task(s, w.id)
        if t is None or not self.mine(w, MIGRATING):
            return False
        info = dict(t.journal)
        self.leases.clear(w)
        w.state, w.updated_at = info["state"], datetime.now(UTC)
        # the task closes in this transaction (its event first: the workload's is the latest)
        result = {"workload": f"{project}/{name}", "from": info["from"], "to": info["to"],
                  "state": info["state"]}
        if downtime_ms is not None:  # known when this process saw the driver finish (not after a repair)
            result["downtime_ms"] = downtime_ms
        self.tasks.end_in(s, t, TASK_SUCCEEDED, result=result)
        self._event(s, "workload.migrated", f"workload/{project}/{name}",
                    f"workload {name} migrated {info['from']} -> {info['to']}{note}", project=project,
                    data={"from": info["from"], "to": info["to"], "task": t.id})
        return True

    def undo_migrate(self, s: Session, project: str, name: str, why: str,
                     end: str = TASK_ROLLED_BACK) -> bool:
        """Move the allocation back to the source; if the source is gone or full, the workload is lost."""
        w, _p = self._workload(s, project, name)
        t = migration_task(s, w.id)
        if t is None or not self.mine(w, MIGRATING):
            return False
        info = dict(t.journal)
        self.leases.clear(w)
        src, dst = info["from"], info["to"]
        src_row = s.scalars(select(HostRow).filter_by(name=src)).first()
        ledger.release(s, w)
        w.updated_at = datetime.now(UTC)
        # what it claimed on the source (journaled by the move; a journal without it: unchanged)
        old = {str(k): float(v) for k, v in (info.get("demand") or w.demand).items()}
        try:
            if src_row is None:
                raise Stale()
            with s.begin_nested():
                ledger.claim(s, src_row.id, None, old, w.id, back=True)
            w.host_id, w.state = src_row.id, info["state"]
            w.demand = old
            if "sized_by" in info:  # the explanation of that claim again
                w.explanation = {**(w.explanation or {}), "sized_by": info["sized_by"]}
            verb = "cancelled" if end == TASK_CANCELLED else "failed"
            msg = f"migration {src} -> {dst} {verb}, back on {src}: {why}"
        except Stale:
            w.state = LOST
            msg = f"migration {src} -> {dst} failed and {src} cannot take it back: {why}"
        self.tasks.end_in(s, t, end if w.state != LOST else TASK_FAILED, error=msg,
                          result={"workload": f"{project}/{name}", "from": src, "to": dst, "state": w.state})
        self._event(s, "workload.migrate_failed", f"workload/{project}/{name}", msg, project=project)
        return True
