"""The packing engine in the live pool: batch placement and consolidation planning.

Batch placement plans every workload at once with plan_batch_placement on the cached ClusterState
(so it opens as few hosts as possible, unlike one-by-one placement; in tiers that keep hosts with
free GPUs for the workloads using them, placement/scarce_batch.py), then claims all allocations
in ONE transaction with the same generation guards as create_workload (the first claim on a host
checks the generation the plan saw; the UPDATEs re-check capacity, state and workload limits), and
re-plans when that commit loses a race. Labels and affinity groups are not the packer's: a batch
whose items carry them is a gang planned with the placement pipeline itself (its filters are the
one rule for labels, affinity, anti-affinity and domain spread), each hard-affinity group as one
unit (summed demand, one host), the others in order on a copy of the state; still all-or-nothing
and claimed in one transaction, groups locked and re-verified as single creates do. Hosts with a
workload limit are only offered when the whole batch fits under it. Consolidation plans migrations
onto hosts that stay active and can execute them through migrate_workload.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from poolvisor.domain.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    NoValidHostError,
    PoolvisorError,
)
from poolvisor.domain.models import GroupPolicy, WorkloadKind, check_name
from poolvisor.drivers.base import DriverError, DriverRefusal, DriverWorkload
from poolvisor.policies.balancing.actions import MIGRATE, PLACE, POWER_OFF, POWER_ON, Actions
from poolvisor.policies.balancing.planner import PabfdPolicy, Policy, plan_balancing, policy_named
from poolvisor.policies.balancing.view import LIVE_CPU_SCALE, LIVE_INTERVAL_S, LIVE_POWER, BalancingView
from poolvisor.policies.packing.consolidate import NO_ROOM, Plan, host_lower_bound, move
from poolvisor.policies.placement import IndexedPlacer, Request
from poolvisor.policies.placement.pipeline import place
from poolvisor.policies.placement.scarce_batch import plan_batch_keeping_scarce
from poolvisor.services import ledger, quotas
from poolvisor.services.base import ServiceBase
from poolvisor.services.catalog import check_demand, check_labels
from poolvisor.services.context import ServiceContext
from poolvisor.services.gpu_cache import whole_gpu_view
from poolvisor.services.gpus import check_gpu_demand
from poolvisor.services.networks import attach_nics, check_networks
from poolvisor.services.nic_plug import plug_nics
from poolvisor.services.placement_cache import PlacementView, group_key, resource_names
from poolvisor.services.records import (
    DRY_RUN,
    PLACING,
    RUNNING,
    STOPPED,
    SUSPENDED,
    TASK_CANCELLED,
    TASK_FAILED,
    TASK_QUEUED,
    TASK_RUNNING,
    TASK_SUCCEEDED,
    TaskRecord,
    WorkloadRecord,
)
from poolvisor.services.shares import Sizing, apply, first_fit, on_host, sizing
from poolvisor.services.tasks import CONSOLIDATE, TaskService
from poolvisor.services.utilization import UtilizationService
from poolvisor.services.workloads import (
    HARD_POLICIES,
    MAX_PRIORITY,
    PLACE_DEADLINE_S,
    WorkloadService,
    check_group_members,
)
from poolvisor.state.cluster import ClusterState
from poolvisor.store.retry import Stale, with_retry
from poolvisor.store.rows import GroupRow, HostRow, NetworkRow, ProjectRow, TaskRow, WorkloadRow

log = logging.getLogger("poolvisor.services")
MAX_BATCH = 1000
SPEC_KEYS = {"name", "flavor", "demand", "kind", "priority", "required_labels", "forbidden_labels", "group",
             "group_policy", "networks", "reservation", "limit", "shares"}
MOVABLE = (RUNNING, STOPPED, SUSPENDED)


@dataclass(frozen=True)
class BatchResult:
    """The created (or, dry run, planned) workloads, each with the plan's reason, and the plan."""

    workloads: list[WorkloadRecord]
    unplaced: list[str]
    plan: dict[str, Any]


@dataclass(frozen=True)
class ConsolidationResult:
    pool: str
    plan: dict[str, Any]
    hosts_emptied: list[str]
    applied: bool = False
    executed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Item:
    name: str
    kind: str
    flavor: str | None
    demand: dict[str, float]
    priority: int
    required: dict[str, str] = field(default_factory=dict)
    forbidden: dict[str, str] = field(default_factory=dict)
    group: str | None = None
    group_policy: GroupPolicy | None = None  # settled by resolve: the group's, else the requested one
    networks: tuple[str, ...] = ()  # one NIC per network, taken in the claim, plugged after the create
    resource_spec: dict[str, dict[str, float]] | None = None  # declared reservation/limit/shares...
    sizing: Sizing | None = None  # ...sized as a single create (shares.py `apply`)

    @property
    def constrained(self) -> bool:
        return bool(self.required or self.forbidden or self.group is not None)


class BatchService(ServiceBase):
    """The packer in the live pool: batch placement, consolidation plans and their apply task."""

    def __init__(self, ctx: ServiceContext, tasks: TaskService, workloads: WorkloadService,
                 utilization: UtilizationService) -> None:
        super().__init__(ctx)
        self.tasks = tasks  # a consolidation apply is a task...
        self.workloads = workloads  # ...whose moves are workload migrations
        self.utilization = utilization  # utilization policies plan on the recorded samples

    def create_workloads_batch(self, project: str, specs: Sequence[Mapping[str, Any]], *,
                               all_or_nothing: bool = True, pool: str | None = None,
                               dry_run: bool = False, create_project: bool = False) -> BatchResult:
        """Place all `specs` at once (fewest hosts) and create them; all-or-nothing by default.
        `create_project`: a missing project is created by the transaction that claims the batch."""
        check_name("project", project)
        if pool is not None:
            check_name("pool", pool)
        if not 1 <= len(specs) <= MAX_BATCH:
            raise InvalidInputError(f"a batch holds 1..{MAX_BATCH} workloads")
        items, project_id, pool_id = self._read(partial(
            self._resolve_batch, project=project, specs=specs, pool=pool, create_project=create_project))

        def step() -> tuple[PlacementView, Plan, int, list[int], list[int] | None, list[_Item]]:
            """Plan and (unless a dry run) claim; Stale (a host changed since the plan) plans again."""
            snap, plan, considered = self._plan_batch(items, pool_id, project)
            placed = [i for i, h in enumerate(plan.assignment) if h >= 0]
            sized = _on_hosts(items, plan, snap)  # declared, no pool named: the chosen hosts' pools
            if plan.unplaced and (all_or_nothing or not placed):
                raise NoValidHostError(
                    f"batch: {len(plan.unplaced)} of {len(items)} workloads do not fit ({plan.summary});"
                    " nothing was created", detail=plan.to_dict())
            if self.workloads.admission is not None:  # HA admission control (services/ha.py), as one
                self.workloads.admission(snap, pool_id, pool, snap.state.resources.vector(
                    _total_demand(sized, placed)))
            if dry_run:
                total = _total_demand(sized, placed)
                self._read(lambda s: quotas.preview(s, project_id, total, len(placed), project=project))
                return snap, plan, considered, placed, None, sized
            ids = self.ctx.write_once(partial(self._claim_batch, project=project, project_id=project_id,
                                              items=sized, placed=placed, snap=snap, plan=plan,
                                              considered=considered))
            return snap, plan, considered, placed, ids, sized

        snap, plan, considered, placed, ids, items = with_retry(
            step, deadline_s=PLACE_DEADLINE_S,
            conflict="too many concurrent placements; the batch was not created, retry")
        if ids is None:  # a dry run: the plan, nothing claimed
            reasons = plan.reasons()
            now = datetime.now(UTC)
            recs = [WorkloadRecord(items[i].name, project, items[i].kind, DRY_RUN,
                                   snap.state.names[int(plan.assignment[i])], items[i].demand,
                                   items[i].priority, items[i].group, now,
                                   _explain(reasons[items[i].name], plan, considered, items[i]),
                                   resources=items[i].resource_spec) for i in placed]
            return BatchResult(recs, plan.unplaced, plan.to_dict())
        return self._confirm_batch(project, items, placed, ids, snap, plan)

    # ---- batch: resolve, plan, claim, confirm ----------------------------------------------------
    def _resolve_batch(self, s: Session, *, project: str, specs: Sequence[Mapping[str, Any]],
                       pool: str | None, create_project: bool) -> tuple[list[_Item], int | None, int | None]:
        pid = self._project_id(s, project, may_create=create_project)  # None: the claim creates it
        pool_id = self._pool(s, pool).id if pool is not None else None
        res = resource_names(s)
        items: list[_Item] = []
        for k, sp in enumerate(specs):
            if not isinstance(sp, Mapping):
                raise InvalidInputError(f"batch item {k}: expected an object")
            extra = set(sp) - SPEC_KEYS
            if extra:
                raise InvalidInputError(f"batch item {k}: unknown field(s) {', '.join(sorted(extra))}; "
                                        f"allowed: {', '.join(sorted(SPEC_KEYS))}")
            name = sp.get("name")
            if not isinstance(name, str):
                raise InvalidInputError(f"batch item {k}: name is required")
            check_name("workload", name)
            try:
                kind = WorkloadKind(sp.get("kind", "vm")).value
            except (ValueError, TypeError):
                raise InvalidInputError(
                    f"batch item {k}: unknown workload kind; allowed: vm, container") from None
            prio = sp.get("priority", 0)
            if isinstance(prio, bool) or not isinstance(prio, int) or abs(prio) > MAX_PRIORITY:
                raise InvalidInputError(f"batch item {k}: priority must be an integer in "
                                        f"-{MAX_PRIORITY}..{MAX_PRIORITY}")
            flavor, demand = sp.get("flavor"), sp.get("demand")
            if (flavor is None) == (demand is None):
                raise InvalidInputError(f"batch item {k}: give exactly one of flavor or demand")
            if flavor is not None:
                d = {str(r): float(v) for r, v in self._flavor(s, str(flavor)).demand.items()}
            else:
                d = check_demand(res, demand)
            check_gpu_demand(d)
            if 0 < d.get("gpu", 0.0) < 1:
                raise InvalidInputError(
                    f"batch item {k}: a fraction of a GPU needs the one-by-one placement (POST "
                    "/v1/workloads), which places it on a device")
            try:  # the single create's sizing rule (services/shares.py), per item
                sz = sizing(s, pool_id, d, sp.get("reservation"), sp.get("limit"), sp.get("shares"))
            except InvalidInputError as e:
                raise InvalidInputError(f"batch item {k}: {e.message}") from None
            items.append(apply(_Item(
                name, kind, None if flavor is None else str(flavor), d, prio,
                check_labels(f"batch item {k}: required_labels", sp.get("required_labels")),
                check_labels(f"batch item {k}: forbidden_labels", sp.get("forbidden_labels")),
                *_group_of(k, sp), networks=_networks_of(s, pid, project, k, sp)), sz))
        items = _settle_groups(s, pid, items)
        names = [it.name for it in items]
        if len(set(names)) != len(names):
            raise InvalidInputError("batch: workload names must be unique")
        taken = s.scalars(select(WorkloadRow.name).where(WorkloadRow.project_id == pid,
                                                         WorkloadRow.name.in_(names))).all()
        if taken:
            raise ConflictError(
                f"workload(s) {', '.join(sorted(taken))} already exist in project {project!r}")
        return items, pid, pool_id

    def _plan_batch(self, items: list[_Item], pool_id: int | None,
                    project: str) -> tuple[PlacementView, Plan, int]:
        with self.cache.lock:
            snap = self._read(self.cache.refresh)
            st = whole_gpu_view(snap)  # whole GPUs need fully free devices (gpu_cache.py)
            for it in items:
                for r in it.demand:
                    if r not in st.resources:
                        raise InvalidInputError(f"no host declares resource {r!r}")
            demands = np.array([st.resources.vector(it.demand) for it in items]).reshape(
                len(items), len(st.resources))
            allowed = np.ones(st.n, dtype=bool)
            if pool_id is not None:
                allowed &= snap.pool_of[: st.n] == pool_id
            limit = st.max_workloads
            allowed &= (limit == 0) | (st.workload_count + len(items) <= limit)
            if any(it.constrained for it in items):
                plan = self._gang_plan(st, items, demands, allowed, project)
            else:
                plan = self._no_worse_than_pipeline(st, items, demands, allowed,
                                                    self._packed(st, items, demands, allowed,
                                                                 self.policy.protected_scarce))
            plan = self._fall_back(st, snap.pool_of, items, demands, allowed, plan, project)
            # the plan refers to this view's arrays: keep what the commit needs
            snap_copy = PlacementView(st.copy(), list(snap.ids), dict(snap.index_of), snap.gens.copy(),
                                 snap.pool_of.copy())
            return snap_copy, plan, int(np.count_nonzero(allowed & st.up))

    @staticmethod
    def _packed(st: ClusterState, items: list[_Item], demands: np.ndarray,
                allowed: np.ndarray, scarce: Sequence[str]) -> Plan | None:
        """The packer's plan, or None when it failed on this (valid) input: an internal failure is
        logged with what it was given and the batch is planned one by one instead, never a 500."""
        try:
            return plan_batch_keeping_scarce(st, [it.name for it in items], demands, allowed=allowed,
                                             scarce=scarce)
        except PoolvisorError as e:
            if e.status_code < 500:
                raise
            log.error("batch packer failed (%s: %s; detail %s) on %d workloads, %d allowed hosts; "
                      "planning them one by one with the placement pipeline instead",
                      type(e).__name__, e.message, e.detail, len(items), int(np.count_nonzero(allowed)))
        except Exception:
            log.exception("batch packer crashed on %d workloads, %d allowed hosts; planning them one "
                          "by one with the placement pipeline instead", len(items),
                          int(np.count_nonzero(allowed)))
        return None

    def _no_worse_than_pipeline(self, st: ClusterState, items: list[_Item], demands: np.ndarray,
                                allowed: np.ndarray, plan: Plan | None) -> Plan:
        """Replay one-by-one placement (the pipeline's choices, through a placement index) on a
        copy; keep it if it beats the packer (it can on some fragmented pools), so a batch never
        uses more hosts than sequential creation. Without a packer plan (it failed), the
        pipeline's is the plan."""
        sim = st.copy()
        placer = IndexedPlacer(sim, self.policy)
        hosts = np.flatnonzero(allowed)
        hosts.flags.writeable = False  # one pool key for the whole batch (see PlacementIndex._key)
        assignment = np.full(len(items), -1, dtype=np.int64)
        for i, it in enumerate(items):
            h = placer.place_fast(Request(name=it.name, demand=demands[i], priority=it.priority,
                                          allowed_hosts=hosts))
            if h >= 0:
                sim.allocate(h, demands[i])
                assignment[i] = h
        mine = np.zeros(st.n, dtype=bool)
        mine[hosts] = True
        after = int(np.count_nonzero((sim.workload_count[: st.n] > 0) & mine))
        unplaced = int(np.sum(assignment < 0))
        if plan is None:  # the packer failed: the pipeline's plan is the plan
            eligible = mine & st.up
            before = int(np.count_nonzero((st.workload_count[: st.n] > 0) & eligible))
            lb = host_lower_bound(demands, st, np.flatnonzero(eligible))
            why, notes = "placement pipeline (the packer failed here)", [
                "the packer failed on this input (logged for the operators); planned one by one instead"]
            tail = ""
        elif (unplaced, after) >= (len(plan.unplaced), plan.hosts_after):
            return plan
        else:
            before, lb = plan.hosts_before, plan.lower_bound
            why, notes = "placement pipeline (fewer hosts than the packer here)", [
                *plan.notes, f"packer plan: {plan.summary}"]
            tail = f" (fewer hosts than the packer's {plan.hosts_after})"
        moves = [move(PLACE, i, -1, int(h), why if h >= 0 else NO_ROOM) for i, h in enumerate(assignment)]
        summary = (f"placed {len(items) - unplaced}/{len(items)} workloads one by one{tail}; "
                   f"active hosts {before} -> {after}")
        return Plan("batch-placement", assignment, moves, before, after, lb, summary, notes,
                    [it.name for it in items], list(st.names))

    def _gang_plan(self, st: ClusterState, items: list[_Item], demands: np.ndarray, allowed: np.ndarray,
                   project: str) -> Plan:
        """Labels and affinity: the placement pipeline (every filter, exact) on a copy of the state,
        each hard-affinity group as one unit (summed demand, merged labels: one host for all),
        then every other item in order, each allocation (and group membership) applied before the
        next decision, so anti-affinity and domain spread hold between the batch's own members."""
        sim = st.copy()
        hosts = np.flatnonzero(allowed)
        hosts.flags.writeable = False
        gangs: dict[str, list[int]] = {}
        units: list[list[int]] = []
        for i, it in enumerate(items):
            if it.group is not None and it.group_policy == GroupPolicy.AFFINITY:
                gangs.setdefault(it.group, []).append(i)
            else:
                units.append([i])
        units = [*gangs.values(), *units]  # the most constrained first
        assignment = np.full(len(items), -1, dtype=np.int64)
        why = "placement pipeline with labels and affinity (gang, all-or-nothing)"
        notes: list[str] = []
        for members in units:
            first = items[members[0]]
            required: dict[str, str] = {}
            forbidden: dict[str, str] = {}
            for i in members:
                required.update(items[i].required)  # a key required with two values: no host has both
                forbidden.update(items[i].forbidden)
            conflict = any(items[i].required.get(k, v) != v for i in members for k, v in required.items())
            gk = group_key(project, first.group) if first.group is not None else None
            req = Request(name=first.name if len(members) == 1 else f"group {first.group}",
                          demand=demands[members].sum(axis=0), required_labels=required,
                          forbidden_labels=forbidden, group=gk, group_policy=first.group_policy,
                          priority=first.priority, allowed_hosts=hosts)
            d = place(sim, req, self.policy)
            if d.host_index is None or conflict:
                names = ", ".join(items[i].name for i in members)
                cause = "conflicting required labels" if conflict else d.explanation.summary()
                notes.append(f"{names}: no valid host ({cause})")
                continue
            for i in members:
                sim.allocate(d.host_index, demands[i], gk, force=True)
                assignment[i] = d.host_index
        mine = np.zeros(st.n, dtype=bool)
        mine[hosts] = True
        eligible = mine & st.up
        before = int(np.count_nonzero((st.workload_count[: st.n] > 0) & eligible))
        after = int(np.count_nonzero((sim.workload_count[: st.n] > 0) & mine))
        unplaced = int(np.sum(assignment < 0))
        lb = host_lower_bound(demands, st, np.flatnonzero(eligible))
        moves = [move(PLACE, i, -1, int(h), why if h >= 0 else NO_ROOM) for i, h in enumerate(assignment)]
        summary = (f"placed {len(items) - unplaced}/{len(items)} workloads with their labels and affinity; "
                   f"active hosts {before} -> {after}")
        return Plan("batch-placement", assignment, moves, before, after, lb, summary, notes,
                    [it.name for it in items], list(st.names))

    def _fall_back(self, st: ClusterState, pool_of: np.ndarray, items: list[_Item], demands: np.ndarray,
                   allowed: np.ndarray, plan: Plan, project: str) -> Plan:
        """The single create's fallback for a batch (shares.py `first_fit`, one loop): an item
        declared with no pool named that the plan could not place by what `max` sets aside is
        tried on each pool whose policy sets aside less, with that amount, by the placement
        pipeline on the state as the plan leaves it, one item after the other in batch order
        (its claim is then that pool's amount: `_on_hosts`). A hard-affinity group is planned as
        one unit by `max` and is not split over fallback pools."""
        todo = [i for i, h in enumerate(plan.assignment)
                if h < 0 and items[i].group_policy != GroupPolicy.AFFINITY
                and (sz := items[i].sizing) is not None and sz.fallbacks()]
        if not todo:
            return plan
        sim = st.copy()
        keys = [group_key(project, it.group) if it.group is not None else None for it in items]
        for i, h in enumerate(plan.assignment):
            if h >= 0:
                sim.allocate(int(h), demands[i], keys[i], force=True)
        active = sim.workload_count[: st.n] > 0
        assignment, moves, placed = plan.assignment.copy(), list(plan.moves), []
        for i in todo:
            it = items[i]

            def attempt(sub: _Item, pool_id: int | None, i: int = i) -> int:
                hosts = np.flatnonzero(allowed & (pool_of[: st.n] == pool_id))
                if hosts.size == 0:
                    return -1
                hosts.flags.writeable = False
                req = Request(name=sub.name, demand=sim.resources.vector(sub.demand),
                              required_labels=sub.required, forbidden_labels=sub.forbidden, group=keys[i],
                              group_policy=sub.group_policy, priority=sub.priority, allowed_hosts=hosts)
                got = place(sim, req, self.policy).host_index
                return -1 if got is None else int(got)

            sub, h = first_fit(it, attempt, lambda h: h >= 0, first=-1)
            if h < 0 or sub.sizing is None:
                continue
            sim.allocate(h, sim.resources.vector(sub.demand), keys[i], force=True)
            assignment[i] = h
            why = (f"placed on a host of a {sub.sizing.policy} pool, which sets aside less: the limit "
                   "fits no host")
            moves = [move(PLACE, i, -1, h, why) if m.workload == i else m for m in moves]
            placed.append(it.name)
        if not placed:
            return plan
        opened = int(np.count_nonzero((sim.workload_count[: st.n] > 0) & ~active))
        return replace(plan, assignment=assignment, moves=moves, hosts_after=plan.hosts_after + opened,
                       summary=f"{plan.summary}; {len(placed)} on pools whose policy sets aside less",
                       notes=[*plan.notes, f"{', '.join(placed)}: the limit fits no host; placed on pools "
                              "whose allocation policy sets aside less (the single create's fallback)"])

    def _claim_groups(self, s: Session, project_id: int, items: list[_Item], placed: list[int],
                      plan: Plan, snap: PlacementView) -> dict[str, int]:
        """The batch's groups (created, or an empty one given the requested policy) and, for hard
        policies, the group row locked and each member's host re-verified against the members as
        committed (workloads.check_group_members: the single create's rule). Stale: plan again."""
        ids: dict[str, int] = {}
        for it in items:
            if it.group is None or it.group in ids:
                continue
            assert it.group_policy is not None
            g = s.scalars(select(GroupRow).filter_by(project_id=project_id, name=it.group)).first()
            if g is None:
                g = GroupRow(project_id=project_id, name=it.group, policy=it.group_policy.value, generation=0)
                s.add(g)
                try:
                    s.flush()
                except IntegrityError:
                    raise Stale() from None  # created concurrently: plan again on what it is now
            elif g.policy != it.group_policy.value:  # an empty group takes the policy of its next members
                _lock_group(s, g.id)
                if s.scalars(select(WorkloadRow.id).where(WorkloadRow.group_id == g.id).limit(1)).first():
                    raise ConflictError(f"group {it.group!r} got members with policy {g.policy}; retry")
                s.execute(update(GroupRow).where(GroupRow.id == g.id).values(policy=it.group_policy.value))
            if it.group_policy in HARD_POLICIES:
                _lock_group(s, g.id)
                for i in placed:
                    if items[i].group == it.group:
                        check_group_members(s, it.group_policy, snap.ids[int(plan.assignment[i])], g.id)
            ids[it.group] = g.id
        return ids

    def _claim_batch(self, s: Session, *, project: str, project_id: int | None, items: list[_Item],
                     placed: list[int], snap: PlacementView, plan: Plan, considered: int) -> list[int]:
        if project_id is None:
            project_id = self._create_project_in(s, project)
        seen: set[int] = set()
        reasons = plan.reasons()
        groups = self._claim_groups(s, project_id, items, placed, plan, snap)
        ids = []
        for i in placed:
            it, h = items[i], int(plan.assignment[i])
            host_id, host = snap.ids[h], snap.state.names[h]
            w = WorkloadRow(project_id=project_id, name=it.name, kind=it.kind, state=PLACING, host_id=host_id,
                            group_id=groups.get(it.group) if it.group is not None else None,
                            flavor=it.flavor, demand=it.demand, priority=it.priority,
                            explanation=_explain(reasons[it.name], plan, considered, it),
                            resource_spec=it.resource_spec,
                            constraints={"pool": None, "required_labels": it.required,
                                         "forbidden_labels": it.forbidden, "batch": True},
                            **self.leases.stamp_values())
            s.add(w)
            try:
                s.flush()
            except IntegrityError:  # created concurrently under the same name: nothing is written
                raise ConflictError(f"workload {it.name!r} already exists in project {project!r}") from None
            # the first claim on a host checks the generation the plan saw; later ones in this
            # transaction find it bumped by us (capacity and limits are re-checked by each UPDATE)
            ledger.claim(s, host_id, int(snap.gens[h]) if host_id not in seen else None, it.demand, w.id)
            seen.add(host_id)
            self._event(s, "workload.placed", f"workload/{project}/{it.name}",
                        f"workload {it.name} placed on {host} (batch): {reasons[it.name]}",
                        project=project, data={"host": host, "demand": it.demand, "batch": True})
            # its NICs in the same transaction, as a single create takes them (networks.attach_nics)
            attach_nics(s, project_id, w.id, f"workload {project}/{it.name}", it.networks)
            ids.append(w.id)
        # the batch as a whole against the project's quota
        quotas.verify(s, project_id, _total_demand(items, placed), len(placed), project=project)
        self.leases.restamp(s, ids)
        self._event(s, "workload.batch_placed", f"project/{project}", f"batch: {plan.summary}",
                    project=project, data={"summary": plan.summary, "lower_bound": plan.lower_bound})
        return ids

    def _confirm_batch(self, project: str, items: list[_Item], placed: list[int], ids: list[int],
                       snap: PlacementView, plan: Plan) -> BatchResult:
        with self.leases.hold(ids):  # renewed while the driver creates them (leases.py)
            return self._confirm_batch_held(project, items, placed, ids, snap, plan)

    def _confirm_batch_held(self, project: str, items: list[_Item], placed: list[int], ids: list[int],
                            snap: PlacementView, plan: Plan) -> BatchResult:
        done: list[tuple[str, DriverWorkload]] = []
        for i in placed:
            host = snap.state.names[int(plan.assignment[i])]
            dw = DriverWorkload(f"{project}/{items[i].name}", items[i].kind, items[i].demand,
                                spec=items[i].resource_spec)
            try:
                self.drivers.lifecycle(host).create(host, dw)
                plug_nics(self.ctx, project, items[i].name, host, dw)  # a refusal takes this guest back
                done.append((host, dw))
            except (DriverError, DriverRefusal) as e:  # 503, or 409 when the driver refuses one
                for h2, dw2 in done:  # all or nothing: take back what the driver already created
                    with contextlib.suppress(PoolvisorError):
                        self.drivers.lifecycle(h2).delete(h2, dw2)
                self._write(partial(_undo_batch, ids=ids, project=project, why=e.message,
                                    owner=self.leases.owner))
                raise type(e)(f"batch not created: {e.message}", e.detail) from None

        def tx(s: Session) -> list[WorkloadRecord]:
            rows = list(s.scalars(select(WorkloadRow).where(WorkloadRow.id.in_(ids))))
            now = datetime.now(UTC)
            for w in rows:
                if w.state == PLACING and self.leases.owns(w):  # else a repair took it over
                    w.state, w.updated_at = RUNNING, now
                    self.leases.clear(w)
                    self._event(s, "workload.created", f"workload/{project}/{w.name}",
                                f"workload {w.name} running (batch)", project=project)
            s.flush()
            order = {wid: k for k, wid in enumerate(ids)}
            return self._workload_records(s, sorted(rows, key=lambda w: order[w.id]))

        return BatchResult(self._write(tx), plan.unplaced, plan.to_dict())

    # ---- consolidation ---------------------------------------------------------------------
    def plan_consolidation(self, pool: str, *, max_migrations: int | None = None,
                           apply: bool = False, policy: str = "pack") -> ConsolidationResult:
        """Plan (and with apply=True execute, via migrate_workload) the balancing of `pool` under
        `policy` (plan_balancing: "pack" = fewest active hosts by reservations, "spread", or a
        utilization policy such as "adaptive" or "thr-mmt" on the workloads' recorded utilization)."""
        check_name("pool", pool)
        _check_max(max_migrations)
        chosen = balancing_policy(policy, max_migrations)

        st = self.pool_state(pool, windows=isinstance(chosen, PabfdPolicy))
        acts = _balance(BalancingView(st, LIVE_POWER, cpu_scale=LIVE_CPU_SCALE), chosen)
        pd = _plan_dict(st, acts, chosen.name)
        pd["summary"] = f"pool {pool}: {pd['summary']}"
        emptied = sorted(st.names[a.src] for a in acts.of_kind(POWER_OFF))
        if not apply:
            return ConsolidationResult(pool, pd, emptied)
        # apply: journaled and run as a consolidate task (here, at once; the API queues it instead)
        t = self.tasks.run_task_inline(CONSOLIDATE, None, f"pool/{pool}",
                                       {"pool": pool, "max_migrations": max_migrations, "policy": chosen.name,
                                        "plan": pd, "hosts_emptied": emptied})
        if t.result is None:
            raise ConflictError(f"consolidation of pool {pool!r} did not complete: {t.error}")
        return ConsolidationResult(pool, t.result["plan"], t.result["hosts_emptied"], True,
                                   t.result["executed"], t.result["failed"])

    def pool_state(self, pool: str, *, windows: bool = True) -> ClusterState:
        """The pool's hosts (a copy, in the placement cache's order) with its movable workloads in
        the workload table ("project/name") and, with `windows`, their recorded utilization: what
        plan_balancing reads, for a consolidation plan and for the controller's rounds."""
        def load(s: Session) -> tuple[int, list[tuple[str, str, int, dict[str, float]]]]:
            pid = self._pool(s, pool).id
            cols = (ProjectRow.name, WorkloadRow.name, WorkloadRow.host_id, WorkloadRow.demand)
            rows = s.execute(select(*cols)
                             .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                             .join(HostRow, HostRow.id == WorkloadRow.host_id)
                             .where(HostRow.pool_id == pid, WorkloadRow.state.in_(MOVABLE))
                             .order_by(ProjectRow.name, WorkloadRow.name)).all()
            return pid, [(p, n, h, {str(k): float(v) for k, v in d.items()}) for p, n, h, d in rows]

        pid, rows = self._read(load)
        with self.cache.lock:
            snap = self._read(self.cache.refresh)
            hosts = np.flatnonzero(snap.pool_of[: snap.state.n] == pid)
            st = snap.state.subset(hosts.tolist())  # the pool alone, in the cache's host order
            at = {snap.ids[int(h)]: i for i, h in enumerate(hosts.tolist())}
        keep = [r for r in rows if r[2] in at]
        table = st.workloads
        for p, n, h, d in keep:  # the store's ledger already counts them on their hosts
            table.add(f"{p}/{n}", at[h], st.resources.vector({k: v for k, v in d.items()
                                                               if k in st.resources}), account=False)
        if windows and table.n:
            self._load_windows(st)
        return st

    def _load_windows(self, st: ClusterState) -> None:
        """The workloads' utilization windows from their recorded samples (the last `window`
        buckets of LIVE_INTERVAL_S, newest first); workloads never sampled keep an empty window
        (they then request their whole CPU, as in the what-if replay)."""
        table = st.workloads
        names = [str(k) for k in table.keys]
        known = [i for i, ok in enumerate(self.utilization.recorded(names)) if ok]
        if not known:
            return
        hist = self.utilization.utilization_history([names[i] for i in known], LIVE_INTERVAL_S,
                                                    steps=table.window)
        table.set_window(np.asarray(known), np.asarray(hist.util)[:, ::-1])

    def submit_consolidation(self, pool: str, max_migrations: int | None = None,
                             policy: str = "pack") -> TaskRecord:
        """Queue a consolidation apply of `pool` under balancing `policy` (404 at once for an
        unknown pool, 422 for an unknown policy)."""
        check_name("pool", pool)
        _check_max(max_migrations)
        balancing_policy(policy, max_migrations)
        return self.tasks.submit(CONSOLIDATE, None, f"pool/{pool}",
                                 {"pool": pool, "max_migrations": max_migrations, "policy": policy},
                                 lambda s: (self._pool(s, pool), None)[1])

    def apply_consolidation(self, task_id: int) -> None:
        """Run a consolidate task: plan once (the plan goes into the journal), then each move as a
        child migrate task, journaling each move it saw end (`done`). Resumed after a crash, it
        skips those and the moves the crash repair confirmed, and tries the rest again (the move
        the crash interrupted, undone by the repair, and the ones never started)."""
        params = self.tasks.get_task(task_id).params
        journal = self.tasks.journal(task_id)
        if "moves" not in journal:
            if "plan" in params:  # planned by the synchronous call that created the task
                plan, emptied = params["plan"], params["hosts_emptied"]
            else:
                res = self.plan_consolidation(str(params["pool"]),
                                              max_migrations=params.get("max_migrations"),
                                              policy=str(params.get("policy", "pack")))
                plan, emptied = res.plan, res.hosts_emptied
            journal = {"plan": plan, "hosts_emptied": emptied,
                       "moves": [{"workload": m["workload"], "to": m["to"]} for m in plan["moves"]]}
            self.tasks.task_note(task_id, f"planned: {plan['summary']}", journal=journal)
        moves, done = journal["moves"], list(journal.get("done", []))
        stopped = False
        for k, m in enumerate(moves):
            if k in done or self._move_outcome(task_id, k) == TASK_SUCCEEDED:
                continue  # ran before the restart (or was confirmed by the repair of its move)
            if self.tasks.cancel_requested(task_id):
                stopped = True  # cancelled: the moves done stay done, the rest do not start
                break
            project, name = str(m["workload"]).split("/", 1)
            cid = self.tasks.start_task("migrate", project, f"workload/{project}/{name}",
                                        {"project": project, "name": name, "host": m["to"], "index": k},
                                        parent_id=task_id)
            with self.leases.hold_tasks([cid]):
                try:
                    self.workloads.migrate_workload(project, name, m["to"], task_id=cid)
                except PoolvisorError as e:
                    self.tasks.end_task(cid, TASK_FAILED, error=e.message)
            ended = self._move_outcome(task_id, k) or "interrupted"
            done.append(k)
            self.tasks.task_note(task_id, f"move {k + 1}/{len(moves)}: {m['workload']} -> {m['to']}: {ended}",
                                 progress=(k + 1) / len(moves), journal={"done": done})
        executed, failed = [], []
        for k, m in enumerate(moves):
            outcome = self._move_outcome(task_id, k, error=True)
            if outcome == TASK_SUCCEEDED:
                executed.append(m["workload"])
            else:
                failed.append(f"{m['workload']}: {outcome or 'not run'}")
        self.tasks.end_task(task_id, TASK_CANCELLED if stopped else TASK_SUCCEEDED, result={
            "pool": params["pool"], "plan": journal["plan"], "hosts_emptied": journal["hosts_emptied"],
            "applied": True, "executed": executed, "failed": failed},
            error=f"cancelled after {len(executed)} of {len(moves)} moves" if stopped else None)

    def _move_outcome(self, task_id: int, index: int, error: bool = False) -> str | None:
        """How the consolidation's move `index` ended (its latest child's final state, with the
        error when asked), None when it has not run (no child, or one cancelled by a recovery)."""
        def tx(s: Session) -> str | None:
            for c in s.scalars(select(TaskRow).where(TaskRow.parent_id == task_id)
                               .order_by(TaskRow.id.desc())):
                if c.params.get("index") != index:
                    continue
                if c.state in (TASK_CANCELLED, TASK_QUEUED, TASK_RUNNING):
                    return None
                return c.error if error and c.state != TASK_SUCCEEDED and c.error else c.state
            return None

        return self._read(tx)


def _group_of(k: int, sp: Mapping[str, Any]) -> tuple[str | None, GroupPolicy | None]:
    """A batch item's group and requested policy (the group's own policy is settled later)."""
    group, pol = sp.get("group"), sp.get("group_policy")
    if group is None:
        if pol is not None:
            raise InvalidInputError(f"batch item {k}: group_policy needs a group")
        return None, None
    if not isinstance(group, str):
        raise InvalidInputError(f"batch item {k}: group must be a name")
    check_name("group", group)
    if pol is None:
        return group, None
    try:
        return group, GroupPolicy(pol)
    except ValueError:
        allowed = ", ".join(p.value for p in GroupPolicy)
        raise InvalidInputError(f"batch item {k}: unknown group policy {pol!r}; allowed: {allowed}") from None


def _settle_groups(s: Session, project_id: int | None, items: list[_Item]) -> list[_Item]:
    """Each group's policy, as a single create settles it: an existing group's, unless it has no
    members and the batch asks for another; else the batch's (soft-anti-affinity by default).
    Two items asking one group for different policies: 422."""
    asked: dict[str, GroupPolicy] = {}
    for it in items:
        if it.group is not None and it.group_policy is not None \
                and asked.setdefault(it.group, it.group_policy) != it.group_policy:
            raise InvalidInputError(f"batch: group {it.group!r} is asked for two policies")
    settled: dict[str, GroupPolicy] = {}
    for name in {it.group for it in items if it.group is not None}:
        g = None if project_id is None else \
            s.scalars(select(GroupRow).filter_by(project_id=project_id, name=name)).first()
        want = asked.get(name)
        if g is None:
            settled[name] = want or GroupPolicy.SOFT_ANTI_AFFINITY
        elif want is None or want.value == g.policy:
            settled[name] = GroupPolicy(g.policy)
        else:
            members = s.scalars(select(WorkloadRow.id).where(WorkloadRow.group_id == g.id).limit(1)).first()
            if members is not None:
                raise ConflictError(f"group {name!r} has policy {g.policy}, not {want.value}")
            settled[name] = want  # an empty group takes the policy of its next members (the claim)
    return [replace(it, group_policy=settled[it.group]) if it.group is not None else it for it in items]


def _lock_group(s: Session, group_id: int) -> None:
    """Bump the group's generation: its row stays locked until commit (as a single create does)."""
    s.execute(update(GroupRow).where(GroupRow.id == group_id).values(generation=GroupRow.generation + 1))


def _check_max(max_migrations: int | None) -> None:
    if max_migrations is not None and (isinstance(max_migrations, bool) or
                                       not isinstance(max_migrations, int) or max_migrations < 0):
        raise InvalidInputError("max_migrations must be an integer >= 0")


def balancing_policy(name: str, max_migrations: int | None) -> Policy:
    """The named balancing policy with the live pool's settings (422 for an unknown name)."""
    if not isinstance(name, str):
        raise InvalidInputError("policy must be a string")
    return policy_named(name, power=LIVE_POWER, interval_s=LIVE_INTERVAL_S, max_migrations=max_migrations)


def _balance(view: BalancingView, policy: Policy) -> Actions:
    """plan_balancing; when it fails internally (a bug, not the caller's input) the failure is
    logged with what it was given and the safe plan is returned: nothing moves."""
    st = view.state
    try:
        return plan_balancing(view, policy)
    except PoolvisorError as e:
        if e.status_code < 500:
            raise
        log.error("consolidation planner failed (policy %s, %s: %s; detail %s) on %d workloads, %d hosts; "
                  "proposing no migrations", policy.name, type(e).__name__, e.message, e.detail,
                  st.workloads.n, st.n)
    except Exception:
        log.exception("consolidation planner (policy %s) crashed on %d workloads, %d hosts; "
                      "proposing no migrations", policy.name, st.workloads.n, st.n)
    return Actions((), ["the consolidation planner failed on this pool (logged for the operators); "
                        "nothing is proposed to move"])


def _plan_dict(st: ClusterState, acts: Actions, policy: str) -> dict[str, Any]:
    """The plan as the API shows it: the migrations (`moves`), every action with its explanation,
    active hosts before and after, the packing lower bound of the workloads' reservations."""
    t = st.workloads
    keys, names = t.keys, st.names
    before = int(np.count_nonzero(st.workload_count > 0))
    after = before - len(acts.of_kind(POWER_OFF)) + len(acts.of_kind(POWER_ON))
    lb = host_lower_bound(t.demand.T, st, np.flatnonzero(st.up & np.all(st.capacity >= 0, axis=0)))
    moves = []
    for a in acts.of_kind(MIGRATE):
        d = a.to_dict(keys, names)
        moves.append({"workload": d["workload"], "from": d["from"], "to": d["to"], "reason": d["rule"]})
    summary = (f"active hosts {before} -> {after} with {len(moves)} migration(s); "
               f"lower bound {lb} host(s) for these workloads")
    return {"kind": "consolidation", "policy": policy, "summary": summary, "hosts_before": before,
            "hosts_after": after, "lower_bound": lb, "moves": moves,
            "actions": [a.to_dict(keys, names) for a in acts], "notes": list(acts.notes)}


def _explain(reason: str, plan: Plan, considered: int, item: _Item) -> dict[str, Any]:
    """Shaped like a placement Explanation (so records and API bodies stay uniform); with the
    allocation policy that sized a declared item's claim, as a single create records it."""
    out: dict[str, Any] = {"hosts_considered": considered, "filters": [], "candidates": considered,
                           "top": [], "rule": f"batch placement: {reason}", "summary": plan.summary,
                           "lower_bound": plan.lower_bound}
    if item.sizing is not None:
        out["sized_by"] = item.sizing.policy
    return out


def _on_hosts(items: list[_Item], plan: Plan, snap: PlacementView) -> list[_Item]:
    """The items as claimed: a declared item of a batch naming no pool takes what its chosen
    host's pool's policy sets aside (planned by the default's, never less: shares.py `sizing`)."""
    return [on_host(it, snap.pool_of, int(plan.assignment[i])) for i, it in enumerate(items)]


def _networks_of(s: Session, project_id: int | None, project: str, k: int,
                 sp: Mapping[str, Any]) -> tuple[str, ...]:
    """A batch item's networks: valid names, no repeats, at most MAX_NICS, all of the project."""
    try:
        nets = check_networks(sp.get("networks"))
    except InvalidInputError as e:
        raise InvalidInputError(f"batch item {k}: {e.message}") from None
    for n in nets:
        found = project_id is not None and s.scalar(
            select(NetworkRow.id).filter_by(project_id=project_id, name=n)) is not None
        if not found:
            raise NotFoundError(f"batch item {k}: network {n!r} not found in project {project!r}")
    return nets


def _undo_batch(s: Session, *, ids: list[int], project: str, why: str, owner: str) -> None:
    for w in s.scalars(select(WorkloadRow).where(WorkloadRow.id.in_(ids), WorkloadRow.lease_owner == owner)):
        ledger.release(s, w)
        s.delete(w)
    ServiceBase._event(s, "workload.batch_failed", f"project/{project}",
                       f"batch rolled back: {why}", project=project)


def _total_demand(items: list[_Item], placed: list[int]) -> dict[str, float]:
    total: dict[str, float] = {}
    for i in placed:
        for r, a in items[i].demand.items():
            total[r] = total.get(r, 0.0) + float(a)
    return total
