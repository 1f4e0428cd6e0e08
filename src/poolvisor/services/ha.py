"""HA: heartbeats -> suspect -> fence -> restart elsewhere, and admission control.

Every `interval` seconds (HaLoop, a clock-core Loop) `HaService.step(now)`:

1. polls every up, maintenance or draining host's heartbeat through its driver. After `suspect_after`
   missed heartbeats in a row the host is suspect (an event); after `fail_after` it is declared
   failed and fenced through its fence agent (fencing/, `HostService.fence`). Only a fence that
   succeeded marks the host fenced, which is what makes its workloads `lost` (their allocations
   released, hosts.py): a host alive but unreachable (a partition) keeps running its guests until
   its agent has switched it off, so there are never two running copies. A fence that fails leaves
   the host and its workloads as they are and says why (event `ha.fence_failed`); it is retried
   at every step.
2. restarts every lost workload (whatever lost it: a fence, a host set down, a failed migration),
   highest priority first, through the placement pipeline (`WorkloadService._decide`: every
   filter, affinity and anti-affinity included; hard groups re-checked under the group's lock
   like a creation). A workload no host can take stays lost with the reason in its explanation
   (`vm show`) and is retried at every step, so it restarts when capacity returns.
3. lets a host it fenced rejoin, empty, once it has been seen off and its heartbeat returns.

Restart is two transactions around the driver's create, like a creation: the claim moves the
workload to `placing` under this process's lease (explanation key `ha`); if the process dies
before the driver confirms, the repair sweep returns it to `lost` (repair.py) rather than deleting
it, and the next step restarts it.

Admission control (policies/admission.py) is a hook on creation (`WorkloadService.admission`):
a creation that would leave too little room to restart after K host failures, or that eats into a
reserved percentage, is refused (409 admission_refused). Settings, global or per pool, are kept in
the `meta` table (key `ha-admission`).

`is_leader` gates the step (leader election, services/leader.py, plugs in there): a process that
is not the leader polls nothing and acts on nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from poolvisor.clock import Clock, LoopStatus, Phase
from poolvisor.clock.background import BackgroundLoop
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError, PoolvisorError
from poolvisor.domain.models import GroupPolicy, HostState
from poolvisor.drivers.base import DriverError, DriverWorkload
from poolvisor.policies import admission
from poolvisor.policies.admission import AdmissionPolicy
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.hosts import HostService
from poolvisor.services.nic_plug import plug_nics
from poolvisor.services.placement_cache import PlacementView, group_key
from poolvisor.services.records import LOST, PLACING, RUNNING, STOPPED, SUSPENDED
from poolvisor.services.shares import apply, on_host, sizing, spec_of
from poolvisor.services.volumes import VolumeService
from poolvisor.services.workloads import HARD_POLICIES, WorkloadService, _Spec
from poolvisor.store.prepared import Prepared
from poolvisor.store.retry import Stale
from poolvisor.store.rows import GroupRow, HostRow, MetaRow, PoolRow, ProjectRow, WorkloadRow

log = logging.getLogger("poolvisor.ha")
DEFAULT_INTERVAL_S = 1.0
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 3600.0
ADMISSION_KEY = "ha-admission"
ADMISSION_TTL_S = 1.0
HA_KEY = "ha"  # the explanation key of a workload HA restarts or waits to restart
LOST_STATE = "lost_state"  # the explanation key of the state a lost workload had (hosts.py sets it)
MAX_HISTORY = 100
WATCHED = ("up", "maintenance", "draining")  # a standby host is off on purpose: no heartbeat


class AdmissionRefused(ConflictError):
    """The creation would break the HA admission policy; `detail` names the resource and headroom."""

    code = "admission_refused"


@dataclass(frozen=True)
class HaSettings:
    interval_s: float = DEFAULT_INTERVAL_S
    suspect_after: int = 1  # missed heartbeats in a row
    fail_after: int = 3

    def __post_init__(self) -> None:
        if not MIN_INTERVAL_S <= self.interval_s <= MAX_INTERVAL_S:
            raise InvalidInputError(f"HA interval must be {MIN_INTERVAL_S:g}..{MAX_INTERVAL_S:g} seconds")
        if not 1 <= self.suspect_after <= self.fail_after <= 1000:
            raise InvalidInputError("HA needs 1 <= suspect_after <= fail_after <= 1000 missed heartbeats")


@dataclass
class HostWatch:
    """What HA knows of one host between steps (in memory: a new leader starts afresh)."""

    missed: int = 0
    first_miss: float | None = None
    status: str = "ok"  # ok, suspect, fence_failed, fenced
    fence_reason: str | None = None
    fenced_by_ha: bool = False
    seen_off: bool = False  # heartbeat absent since HA fenced it (it may rejoin when it returns)


@dataclass
class Failure:
    """One host failure as HA handled it; times on the loop's clock (seconds)."""

    host: str
    first_miss: float
    declared_at: float  # fenced
    workloads: list[int] = field(default_factory=list)
    restarted: list[int] = field(default_factory=list)
    restored_at: float | None = None  # every workload running again (or deleted)

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "first_missed_at": self.first_miss, "declared_failed_at": self.declared_at,
                "detect_s": self.declared_at - self.first_miss, "workloads": len(self.workloads),
                "restarted": len(self.restarted), "restored_at": self.restored_at,
                "restore_s": None if self.restored_at is None else self.restored_at - self.first_miss}


@dataclass(frozen=True)
class StepReport:
    suspect: list[str] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    fence_failed: list[str] = field(default_factory=list)
    rejoined: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    skipped: bool = False  # not the leader


# every HA step (once a second) reads these: a prepared statement (store/prepared.py)
_PLACED = Prepared(
    select(HostRow.name, WorkloadRow.id, WorkloadRow.host_id, ProjectRow.name, WorkloadRow.name,
           WorkloadRow.kind, WorkloadRow.demand)
    .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
    .join(HostRow, HostRow.id == WorkloadRow.host_id)
    .where(WorkloadRow.state.in_((RUNNING, STOPPED, SUSPENDED))))


class HaService(ServiceBase):
    """Host failure detection, fencing, restart, admission control (module doc)."""

    def __init__(self, ctx: ServiceContext, hosts: HostService, workloads: WorkloadService,
                 volumes: VolumeService | None = None) -> None:
        super().__init__(ctx)
        self.hosts = hosts
        self.workloads = workloads
        self.volumes = volumes  # a restarted workload's volume disks are plugged on its new host
        self.settings = HaSettings()
        self.is_leader: Callable[[], bool] = lambda: True  # leader election gates the step here
        self.watch: dict[str, HostWatch] = {}
        self.failures: list[Failure] = []
        self.steps = 0
        self._lock = threading.Lock()  # one step at a time (loop thread vs an API-triggered step)
        self._admission: tuple[float, dict[str, Any]] | None = None  # (read at, settings)

    # ---- the step ------------------------------------------------------------------------------
    def step(self, now: float) -> StepReport:
        if not self.is_leader():
            return StepReport(skipped=True)
        with self._lock:
            self.steps += 1
            rep = StepReport()
            # the hosts and their settled workloads in one read, before any host's inventory
            # (_check_guests); a host deleted meanwhile loses its watch at the next step
            hosts, placed = self._read(lambda s: (s.execute(
                select(HostRow.name, HostRow.state).order_by(HostRow.name)).all(), self._placed_in(s)))
            for name, state in hosts:
                self._watch_host(name, state, now, rep, placed.get(name, []))
            for gone in set(self.watch) - {n for n, _ in hosts}:
                del self.watch[gone]
            self._restart_lost(now, rep)
            return rep

    def _heartbeat(self, name: str) -> bool:
        try:
            return bool(self.drivers.driver_of(name).heartbeat(name))
        except Exception:  # an unreachable node raises: that is a missed heartbeat  # noqa: BLE001
            return False

    @staticmethod
    def _placed_in(s: Session) -> dict[str, list[Any]]:
        """The settled workloads (running, stopped, suspended) per host name, in one query."""
        rows = _PLACED.all(s, {})
        out: dict[str, list[Any]] = {}
        for host, *rest in rows:
            out.setdefault(host, []).append(rest)
        return out

    def _watch_host(self, name: str, state: str, now: float, rep: StepReport, placed: list[Any]) -> None:
        w = self.watch.setdefault(name, HostWatch())
        if state == HostState.FENCED.label:
            if w.fenced_by_ha:
                self._maybe_rejoin(name, w, rep)
            return
        if state not in WATCHED:
            w.missed, w.first_miss, w.status = 0, None, "ok"
            return
        if self._heartbeat(name):
            if w.missed:
                self._note(name, "ha.host_recovered", f"host {name} answers again after {w.missed} missed "
                           "heartbeat(s)", {"missed": w.missed}, "info")
            self.watch[name] = HostWatch()
            self._check_guests(name, placed)
            return
        w.missed += 1
        if w.first_miss is None:
            w.first_miss = now
        if w.missed == self.settings.suspect_after and w.status == "ok":
            w.status = "suspect"
            rep.suspect.append(name)
            self._note(name, "host.suspect", f"host {name} is suspect: {w.missed} missed heartbeat(s) "
                       f"(fenced after {self.settings.fail_after})",
                       {"missed": w.missed, "fail_after": self.settings.fail_after}, "warning")
        if w.missed >= self.settings.fail_after:
            self._fence(name, w, now, rep)

    def _fence(self, name: str, w: HostWatch, now: float, rep: StepReport) -> None:
        victims = self._read(lambda s: list(s.scalars(
            select(WorkloadRow.id).join(HostRow, HostRow.id == WorkloadRow.host_id)
            .where(HostRow.name == name, WorkloadRow.state != LOST))))
        try:
            r = self.hosts.fence(name)
        except PoolvisorError as e:
            rep.fence_failed.append(name)
            if w.fence_reason != e.message:  # one event per distinct reason, retried every step
                self._note(name, "ha.fence_failed",
                           f"host {name} missed {w.missed} heartbeats but could not be fenced: {e.message}; "
                           f"its {len(victims)} workload(s) are not restarted (they may still run there)",
                           {"missed": w.missed, "reason": e.message, "workloads": len(victims)}, "critical")
            w.status, w.fence_reason = "fence_failed", e.message
            return
        self.hosts.mark_state(name, HostState.FENCED, "host.fenced",
                              f"fenced by HA after {w.missed} missed heartbeats ({r.agent}: {r.reason}); "
                              f"{len(victims)} workload(s) to restart")
        rep.fenced.append(name)
        # off now (a power switch): it may rejoin as soon as it answers again
        self.watch[name] = HostWatch(status="fenced", fenced_by_ha=True, seen_off=not self._heartbeat(name))
        self.failures.append(Failure(name, w.first_miss if w.first_miss is not None else now, now, victims))
        del self.failures[:-MAX_HISTORY]

    def _check_guests(self, name: str, rows: list[Any]) -> None:
        """Workloads the database says the host runs but the host does not have any more (it
        restarted between two heartbeats, or lost them): lost, so they restart. The database is
        read before the host's inventory (what is settled there was created before), each gap
        is confirmed with `exists`, and the mark re-checks state and host: the host itself says
        the guest is not there, so a restart never makes a second copy."""
        if not rows:
            return
        try:
            inv = self.drivers.driver_of(name).stats(name)
            if not inv.alive or not inv.complete:
                return  # dead (the heartbeat handles it), or an inventory that cannot tell
            gone = []
            for wid, hid, project, wname, kind, demand in rows:
                key = f"{project}/{wname}"
                if key in inv.states:
                    continue
                dw = DriverWorkload(key, kind, {str(k): float(v) for k, v in demand.items()})
                if not self.drivers.lifecycle(name).exists(name, dw):
                    gone.append((wid, hid, project, wname))
        except PoolvisorError as e:  # the host does not say: nothing is concluded
            log.info("host %s: inventory not read: %s", name, e.message)
            return
        for wid, hid, project, wname in gone:
            self._write(partial(self._mark_gone, wid=wid, hid=hid, project=project, name=wname, host=name))

    def _mark_gone(self, s: Session, *, wid: int, hid: int, project: str, name: str, host: str) -> None:
        w = s.get(WorkloadRow, wid)
        if w is None or w.state not in (RUNNING, STOPPED, SUSPENDED) or w.host_id != hid:
            return
        ledger.release(s, w)
        w.explanation = {**(w.explanation or {}), LOST_STATE: w.state}
        w.state, w.updated_at = LOST, datetime.now(UTC)
        self._event(s, "workload.lost", f"workload/{project}/{name}",
                    f"workload {name} is no longer on host {host} (the host restarted or lost it)",
                    project=project, data={"host": host})

    def _maybe_rejoin(self, name: str, w: HostWatch, rep: StepReport) -> None:
        """A host HA fenced rejoins, empty, when it answers again after having been seen off."""
        if not self._heartbeat(name):
            w.seen_off = True
            return
        if not w.seen_off:
            return
        try:
            self.hosts.unfence(name)  # the agent lets it run guests again; the sim's has none left
            cleared = self._clear_leftovers(name)
        except PoolvisorError as e:
            log.warning("host %s answers again but could not be unfenced: %s", name, e.message)
            return
        if cleared:
            self._note(name, "ha.leftovers_removed", f"host {name} came back with {len(cleared)} stale "
                       f"guest(s) of before its fence ({', '.join(cleared)}): removed before it rejoins",
                       {"guests": cleared}, "warning")
        self.hosts.mark_state(name, HostState.UP, "host.rejoined",
                              "rejoined empty after fencing (its heartbeat is back)")
        self.watch[name] = HostWatch()
        rep.rejoined.append(name)

    def _clear_leftovers(self, name: str) -> list[str]:
        """Delete every guest a fenced host still has when it comes back (a real host powered on
        again keeps its defined domains and disks): their workloads were released at the fence and
        run elsewhere or wait to, so these copies are stale, and a later placement on this host
        must not adopt one. Raises (the host does not rejoin, retried next step) if it cannot."""
        inv = self.drivers.driver_of(name).stats(name)
        if not inv.alive:
            raise DriverError(f"host {name} did not list its guests")
        kinds = {f"{p}/{n}": k for p, n, k in self._read(lambda s: s.execute(
            select(ProjectRow.name, WorkloadRow.name, WorkloadRow.kind)
            .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)).all())}
        for key in sorted(inv.states):
            self.drivers.lifecycle(name).delete(name, DriverWorkload(key, kinds.get(key, "vm"), {}))
        return sorted(inv.states)

    def _note(self, host: str, kind: str, message: str, data: dict[str, Any], severity: str) -> None:
        def tx(s: Session) -> None:
            self._event(s, kind, f"host/{host}", message, data=data, severity=severity)

        self._write(tx)

    # ---- restart ---------------------------------------------------------------------------------
    def _restart_lost(self, now: float, rep: StepReport) -> None:
        lost = self._read(lambda s: list(s.scalars(
            select(WorkloadRow.id).where(WorkloadRow.state == LOST)
            .order_by(WorkloadRow.priority.desc(), WorkloadRow.id))))
        for wid in lost:
            try:
                what, ok = self.restart(wid)
            except PoolvisorError as e:  # e.g. the workload was deleted meanwhile
                log.info("restart of workload %d: %s", wid, e.message)
                continue
            if ok:
                rep.restarted.append(what)
            elif what:
                rep.pending.append(what)
        self._close_failures(now)

    def _close_failures(self, now: float) -> None:
        open_ = [f for f in self.failures if f.restored_at is None]
        if not open_:
            return
        ids = {i for f in open_ for i in f.workloads}
        states = dict(self._read(lambda s: s.execute(
            select(WorkloadRow.id, WorkloadRow.state).where(WorkloadRow.id.in_(ids))).all()))
        for f in open_:
            f.restarted = [i for i in f.workloads if states.get(i) not in (LOST, PLACING)]
            if len(f.restarted) == len(f.workloads):  # running again, or deleted meanwhile
                f.restored_at = now

    def _spec(self, s: Session, w: WorkloadRow) -> tuple[_Spec, str]:
        project = s.scalar(select(ProjectRow.name).where(ProjectRow.id == w.project_id))
        assert project is not None
        c = w.constraints or {}
        pool = c.get("pool")
        pool_id = s.scalar(select(PoolRow.id).filter_by(name=pool)) if pool else None
        spec = _Spec(project, w.project_id, w.name, w.kind, w.flavor,
                     {str(k): float(v) for k, v in w.demand.items()}, w.priority, w.group_id, None, None,
                     dict(c.get("required_labels") or {}), dict(c.get("forbidden_labels") or {}),
                     pool_id, pool)
        if w.group_id is not None:
            g = s.get(GroupRow, w.group_id)
            if g is not None:
                spec = replace(spec, group=g.name, group_policy=GroupPolicy(g.policy))
        if w.resource_spec:  # its declaration, sized again by the create's rule (services/shares.py)
            spec = apply(spec, sizing(s, spec.pool_id, spec.demand, *spec_of(w.resource_spec)))
        return spec, project

    def restart(self, wid: int) -> tuple[str, bool]:
        """Restart one lost workload: (its name, True) once running elsewhere; (name, False) when
        it waits (no host, a lost race, the driver refused) with the reason in its explanation."""
        def look(s: Session) -> tuple[_Spec, str, dict[str, Any]] | None:
            w = s.get(WorkloadRow, wid)
            if w is None or w.state != LOST:
                return None
            spec, project = self._spec(s, w)
            return spec, project, dict(w.explanation or {})

        got = self._read(look)
        if got is None:
            return "", False
        spec, project, old = got
        label = f"{project}/{spec.name}"
        was = str(old[LOST_STATE]) if old.get(LOST_STATE) in (STOPPED, SUSPENDED) else RUNNING
        with self.cache.lock:  # the chosen host's pool sizes a declaration that named none
            spec, decision, target = self.workloads._decide_sized(spec, admit=False)
            if self.cache.view is not None:
                spec = on_host(spec, self.cache.view.pool_of, decision.host_index)
        if target is None:
            self._pending(wid, project, spec.name, decision.explanation.to_dict(),
                          f"no host can take it: {decision.explanation.summary()}", old)
            return label, False
        host = decision.host
        assert host is not None
        host_id, gen, gpus = target

        def claim(s: Session) -> None:
            w = s.get(WorkloadRow, wid)
            if w is None or w.state != LOST:
                raise Stale()
            if spec.group_id is not None and spec.group_policy in HARD_POLICIES:
                s.execute(update(GroupRow).where(GroupRow.id == spec.group_id)
                          .values(generation=GroupRow.generation + 1))
                self.workloads._check_group_unchanged(s, spec, host_id, spec.group_id)
            ledger.claim(s, host_id, gen, spec.demand, wid, gpus)
            w.host_id, w.state, w.updated_at = host_id, PLACING, datetime.now(UTC)
            w.demand = dict(spec.demand)  # a declaration is sized again for its new host's pool
            w.explanation = {**decision.explanation.to_dict(),
                             "rule": f"ha restart: {decision.explanation.rule}",
                             HA_KEY: {"restart": True, "priority": spec.priority, "host": host},
                             LOST_STATE: was,
                             **({"sized_by": spec.sizing.policy} if spec.sizing is not None else {})}
            self.leases.stamp(w)
            self._event(s, "workload.restarting", f"workload/{label}",
                        f"workload {spec.name} restarting on {host} (priority {spec.priority}): "
                        f"{decision.explanation.rule}", project=project, data={"host": host})

        try:
            self.ctx.write_once(claim)
        except Stale:
            return label, False  # the host or the group changed since the decision: next step
        with self.cache.lock:
            self.cache.written(host_id, gen + 1, spec.demand,
                               group_key(project, spec.group) if spec.group is not None else None,
                               key=label, priority=spec.priority, kind=spec.kind)
        dw = DriverWorkload(label, spec.kind, spec.demand, spec=spec.resource_spec)  # the same shares there
        with self.leases.hold([wid]):
            try:
                self.drivers.lifecycle(host).create(host, dw)
                self._replug(wid, project, spec.name, host, dw)
            except (DriverError, PoolvisorError) as e:
                why = e.message
                self._write(lambda s: self._back_to_lost(s, wid, project, spec.name, host, why))
                return label, False
            state, note = self._as_it_was(host, dw, was)
            return label, self._write(lambda s: self._confirm(s, wid, project, spec.name, host, state, note))

    def _replug(self, wid: int, project: str, name: str, host: str, dw: DriverWorkload) -> None:
        """The restarted guest's NICs and volume disks on its new host, as a create plugs them; a
        refusal deletes the new guest (it waits for the next step, lost, with the reason)."""
        plug_nics(self.ctx, project, name, host, dw)  # deletes the guest itself when refused
        if self.volumes is None:
            return
        try:
            self.volumes.plug_workload_disks(wid)
        except PoolvisorError:
            try:
                self.drivers.lifecycle(host).delete(host, dw)
            except PoolvisorError as e:
                log.warning("restart of %s: the guest on %s stays after a refused disk: %s", dw.key, host,
                            e.message)
            raise

    def _as_it_was(self, host: str, dw: DriverWorkload, was: str) -> tuple[str, str]:
        """A workload that was stopped or suspended when it was lost comes back so (created
        running, then stopped or suspended); if the driver refuses, it stays running and says so."""
        if was == RUNNING:
            return RUNNING, ""
        try:
            lc = self.drivers.lifecycle(host)
            (lc.stop if was == STOPPED else lc.suspend)(host, dw)
        except PoolvisorError as e:
            return RUNNING, f" (it was {was}; left running: {e.message})"
        return was, f" ({was}, as it was)"

    def _confirm(self, s: Session, wid: int, project: str, name: str, host: str, state: str = RUNNING,
                 note: str = "") -> bool:
        w = s.get(WorkloadRow, wid)
        if w is None or w.state != PLACING or not self.leases.owns(w):
            return False
        w.state, w.updated_at = state, datetime.now(UTC)
        self.leases.clear(w)
        self._event(s, "workload.restarted", f"workload/{project}/{name}",
                    f"workload {name} restarted on {host} by HA{note}", project=project,
                    data={"host": host, "priority": w.priority, "state": state})
        return True

    def _back_to_lost(self, s: Session, wid: int, project: str, name: str, host: str, why: str) -> None:
        w = s.get(WorkloadRow, wid)
        if w is None or w.state != PLACING or not self.leases.owns(w):
            return
        ledger.release(s, w)
        w.state, w.updated_at = LOST, datetime.now(UTC)
        self.leases.clear(w)
        msg = f"restart on {host} failed: {why}"
        w.explanation = {**(w.explanation or {}), "rule": f"ha: waiting for restart: {msg}",
                         HA_KEY: {"pending": True, "reason": msg},
                         LOST_STATE: (w.explanation or {}).get(LOST_STATE, RUNNING)}
        self._event(s, "ha.restart_failed", f"workload/{project}/{name}", f"workload {name}: {msg}",
                    project=project, data={"host": host, "reason": why})

    def _pending(self, wid: int, project: str, name: str, expl: dict[str, Any], reason: str,
                 old: dict[str, Any]) -> None:
        """Record why the workload waits (once per distinct reason: every step retries it)."""
        if (old.get(HA_KEY) or {}).get("reason") == reason:
            return

        def tx(s: Session) -> None:
            w = s.get(WorkloadRow, wid)
            if w is None or w.state != LOST:
                return
            w.explanation = {**expl, "rule": f"ha: waiting for restart: {reason}",
                             HA_KEY: {"pending": True, "reason": reason},
                             LOST_STATE: old.get(LOST_STATE, RUNNING)}
            self._event(s, "ha.restart_pending", f"workload/{project}/{name}",
                        f"workload {name} waits to restart: {reason}", project=project,
                        data={"reason": reason}, severity="warning")

        self._write(tx)

    # ---- admission control -------------------------------------------------------------------
    def admission_settings(self, *, fresh: bool = True) -> dict[str, Any]:
        """{"global": policy dict, "pools": {pool: policy dict}}. `fresh=False` (every creation
        asks): what was read at most ADMISSION_TTL_S ago (another process may have changed it)."""
        cached = self._admission
        if not fresh and cached is not None and time.monotonic() - cached[0] < ADMISSION_TTL_S:
            return cached[1]
        raw = self._read(lambda s: s.get(MetaRow, ADMISSION_KEY))
        cfg = {"global": AdmissionPolicy().to_dict(), "pools": {}} if raw is None \
            else dict(json.loads(raw.value))
        self._admission = (time.monotonic(), cfg)
        return cfg

    def set_admission(self, tolerate_failures: int, reserve_percent: dict[str, float],
                      pool: str | None = None) -> dict[str, Any]:
        """Set the global policy, or a pool's (which then replaces the global one for its hosts)."""
        pol = admission.check_policy(tolerate_failures, reserve_percent)

        def tx(s: Session) -> dict[str, Any]:
            if pool is not None:
                self._pool(s, pool)  # 404 first
            row = s.get(MetaRow, ADMISSION_KEY)
            cur = json.loads(row.value) if row is not None else {"global": AdmissionPolicy().to_dict(),
                                                                  "pools": {}}
            if pool is None:
                cur["global"] = pol.to_dict()
            else:
                cur["pools"][pool] = pol.to_dict()
            if row is None:
                s.add(MetaRow(key=ADMISSION_KEY, value=json.dumps(cur)))
            else:
                row.value = json.dumps(cur)
            self._event(s, "ha.admission", f"pool/{pool}" if pool else "ha",
                        f"HA admission control {'of pool ' + pool if pool else '(global)'}: "
                        f"tolerate {pol.tolerate} host failure(s), reserve {pol.reserve or 'nothing'}",
                        data={"pool": pool, **pol.to_dict()}, severity="info")
            return dict(cur)

        out = self._write(tx)
        self._admission = None  # this process sees its change at once
        return out

    def clear_pool_admission(self, pool: str) -> dict[str, Any]:
        def tx(s: Session) -> dict[str, Any]:
            row = s.get(MetaRow, ADMISSION_KEY)
            cur = json.loads(row.value) if row is not None else {"global": AdmissionPolicy().to_dict(),
                                                                  "pools": {}}
            if cur["pools"].pop(pool, None) is None:
                raise NotFoundError(f"pool {pool!r} has no admission policy of its own")
            assert row is not None
            row.value = json.dumps(cur)
            return dict(cur)

        out = self._write(tx)
        self._admission = None  # this process sees its change at once
        return out

    def policy_for(self, pool: str | None, settings: dict[str, Any] | None = None) -> AdmissionPolicy:
        cfg = settings or self.admission_settings()
        d = cfg["pools"].get(pool) if pool is not None else None
        d = d if d is not None else cfg["global"]
        return AdmissionPolicy(int(d["tolerate_failures"]), dict(d["reserve_percent"]))

    def check_admission(self, snap: PlacementView, pool_id: int | None, pool: str | None,
                        demand: np.ndarray) -> None:
        """The creation hook (WorkloadService.admission): 409 admission_refused when adding
        `demand` breaks the policy of the workload's pool (all hosts when it names none)."""
        pol = self.policy_for(pool, self.admission_settings(fresh=False))
        if not pol.active:
            return
        st = snap.state
        scope = snap.pool_hosts(pool_id) if pool_id is not None else np.arange(st.n)
        ref = admission.admit(st.capacity[:, scope], st.allocated[:, scope], st.up[scope], demand, pol,
                              list(st.resources.names))
        if ref is not None:
            raise AdmissionRefused(ref.message(), detail={"pool": pool, **ref.to_dict()})

    # ---- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self.cache.lock:
            snap = self._read(self.cache.refresh)
            st = snap.state
            cfg = self.admission_settings()
            pol = self.policy_for(None, cfg)
            room = admission.headroom(st.capacity, st.allocated, st.up, pol, list(st.resources.names))
            pools = {}
            for name, pid in self._read(lambda s: s.execute(select(PoolRow.name, PoolRow.id)).all()):
                if name in cfg["pools"]:
                    sc = snap.pool_hosts(pid)
                    pools[name] = {"policy": cfg["pools"][name], "headroom": admission.headroom(
                        st.capacity[:, sc], st.allocated[:, sc], st.up[sc], self.policy_for(name, cfg),
                        list(st.resources.names))}
        lost = self._read(lambda s: s.execute(
            select(ProjectRow.name, WorkloadRow.name, WorkloadRow.priority, WorkloadRow.explanation)
            .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
            .where(WorkloadRow.state == LOST).order_by(WorkloadRow.priority.desc(), WorkloadRow.id)).all())
        s_ = self.settings
        return {
            "leader": self.is_leader(), "steps": self.steps,
            "settings": {"interval_s": s_.interval_s, "suspect_after": s_.suspect_after,
                         "fail_after": s_.fail_after},
            "hosts": [{"host": h, "status": w.status, "missed": w.missed, "fence_reason": w.fence_reason}
                      for h, w in sorted(dict(self.watch).items())],  # a copy: the loop's thread writes
            "pending": [{"workload": f"{p}/{n}", "priority": pr,
                         "reason": ((e or {}).get(HA_KEY) or {}).get("reason", "not tried yet")}
                        for p, n, pr, e in lost],
            "failures": [f.to_dict() for f in list(self.failures)],
            "admission": {"global": cfg["global"], "headroom": room, "pools": pools},
        }


def check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float) \
            or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        raise InvalidInputError(f"HA interval must be {MIN_INTERVAL_S:g}..{MAX_INTERVAL_S:g} seconds")
    return float(interval)


class HaLoop:
    """`poolvisor serve`'s HA step every `interval` s (a BackgroundLoop: on its own WallClock and
    thread, or on a clock the caller runs, a SimClock in tests and the digital twin), only while
    `is_leader()`."""

    def __init__(self, ha: HaService, interval: float | None = None, *, clock: Clock | None = None,
                 is_leader: Callable[[], bool] | None = None) -> None:
        self.ha = ha
        if interval is not None:
            ha.settings = replace(ha.settings, interval_s=check_interval(interval))
        if is_leader is not None:
            ha.is_leader = is_leader  # its status then says whether this process leads
        self.runner = BackgroundLoop("ha", self._step, ha.settings.interval_s, clock=clock,
                                     is_leader=is_leader, what="HA step", log=log, priority=Phase.ACT)
        self.clock, self.loop = self.runner.clock, self.runner.loop

    def _step(self, t: float) -> None:
        rep = self.ha.step(t)
        for what in ("fenced", "fence_failed", "rejoined", "restarted"):
            names = getattr(rep, what)
            if names:
                log.info("ha %s: %s", what, ", ".join(names))

    def status(self) -> LoopStatus:
        return self.runner.status()

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()
