"""Preemption in the create path: when a request of a class above spot fits nowhere, evict the
fewest lowest-class workloads of one host (policies/preemption.py) and place it there.

Only the failure path pays for it: the candidates are read when placement found no host. The
eviction and the claim are one transaction (WorkloadService._claim calls `evict`): the host's
generation must still be the one the plan saw (ledger.guard, which also locks the host row),
each victim must still be in the state it was read in, then the ledger releases the victims and
claims for the request; any change in between rolls everything back (Stale) and placement
decides again. The victims end in state `preempted` (no host, nothing held) with a state_reason
and a `workload.preempted` event; the request's explanation lists them. The driver deletes the
victims (after the commit, before the request's own create).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from poolvisor.drivers.base import DriverError, DriverWorkload
from poolvisor.policies.placement import Decision, PlacementPolicy, Request
from poolvisor.policies.placement.explain import Candidate, Explanation
from poolvisor.policies.placement.pipeline import run_filters
from poolvisor.policies.preemption import PRIORITY_CLASSES, choose_victims, class_rank
from poolvisor.services import ledger
from poolvisor.services.base import ServiceBase
from poolvisor.services.context import ServiceContext
from poolvisor.services.placement_cache import PlacementView
from poolvisor.services.records import PREEMPTED, RUNNING, STOPPED, SUSPENDED
from poolvisor.store.retry import Stale
from poolvisor.store.rows import ProjectRow, WorkloadRow

log = logging.getLogger(__name__)
EVICTABLE = (RUNNING, STOPPED, SUSPENDED)  # transient rows belong to a use case in flight: never
CAPACITY_FILTERS = frozenset({"capacity", "max-workloads", "gpu-devices"})  # what eviction can change


@dataclass(frozen=True)
class Victim:
    """A workload the plan evicts, as it was read (the eviction re-checks the state)."""

    id: int
    project: str
    name: str
    kind: str
    state: str
    host_id: int
    demand: dict[str, float]
    priority_class: str

    def driver_workload(self) -> DriverWorkload:
        return DriverWorkload(f"{self.project}/{self.name}", self.kind, self.demand)


@dataclass(frozen=True)
class Plan:
    """Evict `victims` from the host (db id, generation seen), then place the request there."""

    host_id: int
    generation: int
    decision: Decision
    victims: tuple[Victim, ...]


class PreemptionService(ServiceBase):
    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self._eligible_policies: dict[int, PlacementPolicy] = {}

    def plan(self, snap: PlacementView, req: Request, failed: Decision, priority_class: str) -> Plan | None:
        """Under the cache lock, after `failed` (no host): the eviction that makes room, or None.
        A request for GPUs is not served by preemption (which devices free up is the ledger's)."""
        rank = class_rank(priority_class)
        st = snap.state
        if rank == 0 or st.n == 0 or ("gpu" in st.resources and req.demand[st.resources.index("gpu")] > 0):
            return None
        lower = PRIORITY_CLASSES[:rank]
        rows = self._read(lambda s: s.execute(
            select(WorkloadRow.id, ProjectRow.name, WorkloadRow.name, WorkloadRow.kind, WorkloadRow.state,
                   WorkloadRow.host_id, WorkloadRow.demand, WorkloadRow.priority_class)
            .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
            .where(WorkloadRow.priority_class.in_(lower), WorkloadRow.state.in_(EVICTABLE),
                   WorkloadRow.host_id.isnot(None))
            .order_by(WorkloadRow.id)).all())
        if not rows:
            return None
        victims = [Victim(i, p, n, k, state, h, {str(r): float(v) for r, v in d.items()}, c)
                   for i, p, n, k, state, h, d, c in rows]
        at = snap.positions(np.array([v.host_id for v in victims], dtype=np.int64))
        vd = np.zeros((len(st.resources), len(victims)))
        for j, v in enumerate(victims):
            for r, a in v.demand.items():
                if r in st.resources:
                    vd[st.resources.index(r), j] = a
        eligible, _reports = run_filters(st, req, self._eligible_policy())
        got = choose_victims(st.free, st.capacity, eligible, req.demand, at, vd,
                             np.array([class_rank(v.priority_class) for v in victims]), rank,
                             count=st.workload_count, max_count=st.max_workloads)
        if got is None:
            return None
        chosen = tuple(victims[i] for i in got.victims)
        host = st.names[got.host]
        names = ", ".join(f"{v.project}/{v.name} ({v.priority_class})" for v in chosen)
        rule = (f"preemption: no host had room; evicting {len(chosen)} lower-class workload(s) on {host} "
                f"makes room (classes up to {PRIORITY_CLASSES[got.max_rank]}): {names}")
        ex = failed.explanation
        decision = Decision(failed.request, host, got.host, Explanation(
            ex.hosts_considered, ex.filters, 1, [Candidate(host, 0.0, {})], rule, ex.detail, "preemption"))
        return Plan(snap.ids[got.host], int(snap.gens[got.host]), decision, chosen)

    def _eligible_policy(self) -> PlacementPolicy:
        """The placement policy's filters but those eviction can change: one rule, not a copy."""
        p = self._eligible_policies.get(id(self.policy))
        if p is None:
            p = PlacementPolicy(filters=[f for f in self.policy.filters if f not in CAPACITY_FILTERS],
                                scorers=(), scarce=self.policy.scarce)
            self._eligible_policies = {id(self.policy): p}
        return p

    def evict(self, s: Session, plan: Plan, by: str, by_class: str) -> None:
        """In the claim's transaction: guard the host, then preempt every victim (Stale on a change)."""
        ledger.guard(s, plan.host_id, plan.generation)
        now = datetime.now(UTC)
        host = plan.decision.host
        for v in plan.victims:
            reason = f"preempted by {by} (class {by_class}) on host {host}"[:255]
            r = s.execute(update(WorkloadRow)
                          .where(WorkloadRow.id == v.id, WorkloadRow.state == v.state,
                                 WorkloadRow.host_id == v.host_id)
                          .values(state=PREEMPTED, state_reason=reason, updated_at=now),
                          execution_options={"synchronize_session": False})
            if r.rowcount != 1:  # type: ignore[attr-defined]
                raise Stale()  # changed since the plan read it: decide again
            w = s.get(WorkloadRow, v.id)
            assert w is not None
            s.refresh(w)
            ledger.release(s, w)
            self._event(s, "workload.preempted", f"workload/{v.project}/{v.name}",
                        f"workload {v.name} ({v.priority_class}) preempted on {host} to make room for "
                        f"{by} ({by_class})", project=v.project,
                        data={"host": host, "by": by, "by_class": by_class, "was": v.state,
                              "class": v.priority_class}, severity="warning")

    def stop_evicted(self, host: str, victims: tuple[Victim, ...]) -> None:
        """After the commit: remove the victims from the host's driver (the ledger already gave their
        capacity away). A driver that fails is logged and recorded; the request goes on."""
        for v in victims:
            try:
                self.drivers.lifecycle(host).delete(host, v.driver_workload())
            except DriverError as e:
                log.warning("preempted workload %s/%s: driver delete on %s failed: %s",
                            v.project, v.name, host, e.message)
                self._write(partial(self._event, kind="workload.preempt_driver_failed",
                                    subject=f"workload/{v.project}/{v.name}",
                                    message=f"workload {v.name}: the driver did not remove it from "
                                            f"{host}: {e.message}",
                                    project=v.project, data={"host": host}, severity="warning"))
