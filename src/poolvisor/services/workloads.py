"""Workloads: placement + optimistic commit, lifecycle actions, migration, deletion.

create_workload is two transactions around the driver call: (1) claim capacity and insert the
workload in state "placing"; (2) after the driver confirms, mark it "running". A crash between
them leaves a "placing" row, leased to this process until it confirms (leases.py), that the repair
sweep resolves once the lease has expired (repair.py). Step (1) is optimistic: the
decision is taken on a cached ClusterState and committed only if the chosen host's generation
(and the affinity group's, for hard policies) is unchanged; otherwise decide again. The decision
itself is `served.decide` on the cache's placement index (no I/O, O(sqrt H)): a summary
explanation unless `explain=True` asks for the full per-filter counts.

Nothing is written before the claim: resolving a request only reads, and what a request creates
besides its workload (the admins' default project, a new group, an empty group's new policy) is
written by the claim's transaction, so a dry run or a request that fails leaves no trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import Table, bindparam, delete, exists, insert, select, update
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
from poolvisor.observability.instruments import observe_placement
from poolvisor.policies.placement import Decision, Request
from poolvisor.policies.placement.pipeline import require_host
from poolvisor.policies.placement.served import decide
from poolvisor.policies.preemption import DEFAULT_CLASS, PRIORITY_CLASSES
from poolvisor.services import ledger, quotas
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.catalog import check_demand, check_labels
from poolvisor.services.claim_batch import ClaimBatcher
from poolvisor.services.context import ServiceContext
from poolvisor.services.flow import Call, Claim, Flow, FlowRunner, Lone, Tx, run_sync
from poolvisor.services.gpu_cache import chosen_devices, fit_devices
from poolvisor.services.gpus import check_gpu_demand, workload_shares
from poolvisor.services.networks import attach_nics, validate_networks
from poolvisor.services.nic_plug import plug_nics
from poolvisor.services.placement_cache import PlacementView, group_key, resource_names
from poolvisor.services.preemption import Plan, PreemptionService, Victim
from poolvisor.services.records import (
    DELETING,
    DRY_RUN,
    HOLDING_STATES,
    MIGRATING,
    PLACING,
    RUNNING,
    STOPPED,
    SUSPENDED,
    TaskRecord,
    WorkloadRecord,
)
from poolvisor.services.shares import Sizing, apply, first_fit, on_host, sizing
from poolvisor.services.tasks import TaskService
from poolvisor.store.prepared import Prepared
from poolvisor.store.retry import Stale, with_retry
from poolvisor.store.rows import (
    FlavorRow,
    GroupRow,
    HostRow,
    PoolRow,
    ProjectQuotaRow,
    ProjectRow,
    WorkloadRow,
)

if TYPE_CHECKING:
    from poolvisor.services.lifecycle import WorkloadLifecycle

MAX_PRIORITY = 1_000_000
PLACE_DEADLINE_S = 60.0  # keep deciding again while optimistic commits lose races, up to this long
TRANSIENT = (PLACING, MIGRATING, DELETING)
HARD_POLICIES = (GroupPolicy.AFFINITY, GroupPolicy.ANTI_AFFINITY, GroupPolicy.DOMAIN_SPREAD)
ACTIONS = {  # action -> (states it applies to, resulting state)
    "start": ((STOPPED,), RUNNING),
    "stop": ((RUNNING,), STOPPED),
    "suspend": ((RUNNING,), SUSPENDED),
    "resume": ((SUSPENDED,), RUNNING),
}


_Target = tuple[int, int, list[int] | None]  # host id, its generation, the GPU devices chosen

_PROJECTS, _FLAVORS, _POOLS = (cast(Table, r.__table__) for r in (ProjectRow, FlavorRow, PoolRow))
_QUOTAS = cast(Table, ProjectQuotaRow.__table__)
_POOL_ID = Prepared(select(_POOLS.c.id).where(_POOLS.c.name == bindparam("p")))
_WORKLOADS = cast(Table, WorkloadRow.__table__)
_NAMED = _PROJECTS.c.name == bindparam("p")
# What every create reads, in one statement (four before): the project's id, whether the name is
# taken, the flavor's demand, and the project's quota limits when it enforces one (NULL otherwise).
_REQUEST = Prepared(select(
    select(_PROJECTS.c.id).where(_NAMED).scalar_subquery().label("pid"),
    select(_WORKLOADS.c.id).join(_PROJECTS, _PROJECTS.c.id == _WORKLOADS.c.project_id)
    .where(_NAMED, _WORKLOADS.c.name == bindparam("n")).scalar_subquery().label("taken"),
    select(_FLAVORS.c.demand).where(_FLAVORS.c.name == bindparam("f")).scalar_subquery().label("flavor"),
    select(_QUOTAS.c.limits).join(_PROJECTS, _PROJECTS.c.id == _QUOTAS.c.project_id)
    .where(_NAMED, _QUOTAS.c.enforced.is_(True)).scalar_subquery().label("limits")))
_NEW_COLUMNS = ("project_id", "name", "kind", "state", "host_id", "group_id", "flavor", "demand", "priority",
                "explanation", "priority_class", "resource_spec", "constraints", "created_at", "updated_at",
                "lease_owner", "lease_expires")
# The claim of a project the resolve saw without an enforced quota: the INSERT itself re-checks
# that (no row when a quota was set since), so the claim needs no quota statement of its own;
# with no row inserted, the claim takes the quota's lock and checks it (quotas.verify).
_INSERT_WORKLOAD = Prepared(insert(_WORKLOADS).returning(_WORKLOADS.c.id), keys=_NEW_COLUMNS)
_INSERT_UNLESS_QUOTA = Prepared(
    insert(_WORKLOADS)
    .from_select(list(_NEW_COLUMNS),
                 select(*(bindparam(c, type_=_WORKLOADS.c[c].type) for c in _NEW_COLUMNS))
                 .where(~exists().where(_QUOTAS.c.project_id == bindparam("project_id"),
                                        _QUOTAS.c.enforced.is_(True))))
    .returning(_WORKLOADS.c.id))
_CONFIRM = Prepared(update(_WORKLOADS)
                    .where(_WORKLOADS.c.id == bindparam("w"), _WORKLOADS.c.state == PLACING,
                           _WORKLOADS.c.lease_owner == bindparam("owner"))
                    .values(state=RUNNING, updated_at=bindparam("now"), lease_owner=None, lease_expires=None)
                    .returning(_WORKLOADS.c.created_at, _WORKLOADS.c.explanation))


class _GroupChanged(Stale):
    """The group got a policy (by its first member) between resolve and claim: resolve again."""


@dataclass(frozen=True)
class _Spec:
    """A validated creation request (ids None: created by the claim)."""

    project: str
    project_id: int | None
    name: str
    kind: str
    flavor: str | None
    demand: dict[str, float]
    priority: int
    group_id: int | None
    group: str | None
    group_policy: GroupPolicy | None
    required: dict[str, str]
    forbidden: dict[str, str]
    pool_id: int | None
    pool: str | None
    networks: tuple[str, ...] = ()  # one NIC per network, attached in the claiming transaction
    priority_class: str = DEFAULT_CLASS  # policies/preemption.py: a higher class may evict lower ones
    host: str | None = None  # pinned to this host (a backup restore's --host); placement still checks it
    resource_spec: dict[str, dict[str, float]] | None = None  # declared reservation/limit/shares (shares.py)
    sizing: Sizing | None = None  # how the declaration is sized (shares.py); None: nothing declared
    quota_free: bool = False  # the resolve read no enforced quota of the project (the claim re-checks)


class WorkloadService(ServiceBase):
    """Workloads: create (below), queries, and delete, actions and migration (lifecycle.py)."""

    def __init__(self, ctx: ServiceContext, tasks: TaskService) -> None:
        super().__init__(ctx)
        self.tasks = tasks  # a migration is journaled as a task
        # HA admission control (services/ha.py): (view, pool id, pool, demand vector) -> None or 409
        self.admission: Callable[[PlacementView, int | None, str | None, np.ndarray], None] | None = None
        # no room for a creation: wake a standby host (services/host_power.py): (pool, demand, key)
        self.on_no_room: Callable[[str | None, dict[str, float], str], Any] | None = None
        from poolvisor.services.lifecycle import WorkloadLifecycle  # it imports this module

        self.lifecycle: WorkloadLifecycle = WorkloadLifecycle(ctx, self, tasks)
        self.preemption = PreemptionService(ctx)
        self.batcher: ClaimBatcher | None = None  # concurrent creates claimed together (claim_batch.py)
        self.flows: FlowRunner | None = None  # creates and deletes run by the writer (flow.py)

    def start_batching(self) -> bool:
        """Decide and claim concurrent creates in batches (services/claim_batch.py) on the writer
        thread of group commit (`serve`, either database). False when it does not apply."""
        group = self.ctx.store.group
        if self.batcher is not None or group is None:
            return False
        self.batcher = ClaimBatcher(self, group.worker)
        self.flows = FlowRunner(group, self.batcher, self.drivers)
        return True

    def stop_batching(self) -> None:
        """Later creates go the lone way; slow driver calls under way finish."""
        if self.batcher is not None:
            self.batcher.stop()
        if self.flows is not None:
            self.flows.close()

    def create_workload(self, project: str, name: str, *, flavor: str | None = None,
                        demand: dict[str, float] | None = None, kind: str = "vm", priority: int = 0,
                        group: str | None = None, group_policy: str | None = None,
                        required_labels: dict[str, str] | None = None,
                        forbidden_labels: dict[str, str] | None = None, pool: str | None = None,
                        dry_run: bool = False, create_project: bool = False,
                        explain: bool = False, networks: list[str] | None = None,
                        priority_class: str = DEFAULT_CLASS, host: str | None = None,
                        reservation: dict[str, float] | None = None, limit: dict[str, float] | None = None,
                        shares: dict[str, float] | None = None) -> WorkloadRecord:
        """Place and create a workload. `create_project`: a missing project is created by the same
        transaction that claims the workload (never by a dry run or a failed request). `explain`:
        the full per-filter counts in the explanation (else a summary; see served.py)."""
        return run_sync(self.ctx, self.batcher, self.create_flow(
            project, name, flavor=flavor, demand=demand, kind=kind, priority=priority, group=group,
            group_policy=group_policy, required_labels=required_labels, forbidden_labels=forbidden_labels,
            pool=pool, dry_run=dry_run, create_project=create_project, explain=explain, networks=networks,
            priority_class=priority_class, host=host, reservation=reservation, limit=limit, shares=shares))

    def create_flow(self, project: str, name: str, *, flavor: str | None = None,
                    demand: dict[str, float] | None = None, kind: str = "vm", priority: int = 0,
                    group: str | None = None, group_policy: str | None = None,
                    required_labels: dict[str, str] | None = None,
                    forbidden_labels: dict[str, str] | None = None, pool: str | None = None,
                    dry_run: bool = False, create_project: bool = False,
                    explain: bool = False, networks: list[str] | None = None,
                    priority_class: str = DEFAULT_CLASS, host: str | None = None,
                    reservation: dict[str, float] | None = None, limit: dict[str, float] | None = None,
                    shares: dict[str, float] | None = None) -> Flow[WorkloadRecord]:
        """create_workload as a flow (services/flow.py): the request is checked now (raising its
        422 at once), then the returned generator claims, calls the driver and confirms."""
        check_name("workload", name)
        check_name("project", project)
        try:
            kind = WorkloadKind(kind).value
        except ValueError:
            raise InvalidInputError(f"unknown workload kind {kind!r}; allowed: vm, container") from None
        if (flavor is None) == (demand is None):
            raise InvalidInputError("give exactly one of flavor or demand")
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > MAX_PRIORITY:
            raise InvalidInputError(f"priority must be an integer in -{MAX_PRIORITY}..{MAX_PRIORITY}")
        policy = None
        if group_policy is not None:
            try:
                policy = GroupPolicy(group_policy)
            except ValueError:
                allowed = ", ".join(p.value for p in GroupPolicy)
                raise InvalidInputError(
                    f"unknown group policy {group_policy!r}; allowed: {allowed}") from None
            if group is None:
                raise InvalidInputError("group_policy needs a group")
        if group is not None:
            check_name("group", group)
        required = check_labels("required_labels", required_labels)
        forbidden = check_labels("forbidden_labels", forbidden_labels)
        if pool is not None:
            check_name("pool", pool)
        if priority_class not in PRIORITY_CLASSES:
            raise InvalidInputError(f"unknown priority class {priority_class!r}; allowed: "
                                    + ", ".join(PRIORITY_CLASSES))

        nets = validate_networks(self, project, networks)

        def resolve_in(s: Session) -> _Spec:
            spec = self._resolve_in(s, project, name, kind, flavor, demand, priority, group, policy, required,
                                    forbidden, pool, create_project)
            spec = replace(spec, networks=nets, priority_class=priority_class, host=host)
            if reservation is not None or limit is not None or shares is not None:
                spec = apply(spec, sizing(s, spec.pool_id, spec.demand, reservation, limit, shares))
            return spec

        def resolve() -> _Spec:
            return self._read(resolve_in)

        if dry_run:
            spec = resolve()
            with self.cache.lock:  # the preemption plan is made on the view the decision used
                spec, decision, _target = self._decide_sized(spec, explain)
                plan = self._preempt(spec, decision) if decision.host_index is None else None
                if self.cache.view is not None:  # what a real create would claim there
                    spec = on_host(spec, self.cache.view.pool_of,
                                   (plan.decision if plan is not None else decision).host_index)
            expl = (plan.decision if plan is not None else decision).explanation.to_dict()
            if plan is not None:  # what a real create would evict (nothing is evicted here)
                expl["preempted"] = [{"workload": f"{v.project}/{v.name}", "class": v.priority_class,
                                      "was": v.state} for v in plan.victims]
            return _finished(WorkloadRecord(
                name, project, kind, DRY_RUN, plan.decision.host if plan is not None else decision.host,
                spec.demand, priority, group, datetime.now(UTC), expl, priority_class=priority_class,
                resources=spec.resource_spec))

        def step() -> tuple[_Spec, int, str, int | None, tuple[Victim, ...]]:
            """Resolve, decide and claim; Stale (the host or group changed since) does it again."""
            new_group: list[int] = []
            evicted: list[Victim] = []
            with self.cache.lock:  # one read transaction: the request's references, then the view
                spec, snap = self._read(lambda s: (resolve_in(s), self.cache.refresh(s)))
                wid, host, spec = self._place_and_claim(spec, new_group, explain, evicted, snap=snap)
            return spec, wid, host, new_group[0] if new_group else None, tuple(evicted)

        def alone() -> tuple[_Spec, int, str, int | None]:
            """The usual path: decide + claim with retries, preemption, waking a standby host."""
            try:
                spec, wid, on, created, evicted = with_retry(
                    step, deadline_s=PLACE_DEADLINE_S,
                    conflict="too many concurrent placements; the workload was not created, retry")
            except NoValidHostError as e:
                if self.on_no_room is None or host is not None:
                    raise
                got = resolve()
                wake = self.on_no_room(pool, dict(got.demand), f"{project}/{name}")
                if wake is None:
                    raise
                if not wake.ready:
                    raise NoValidHostError(f"{e.message}; {wake.message}", e.detail) from None
                spec, wid, on, created, evicted = with_retry(  # the woken host is up: place again
                    step, deadline_s=PLACE_DEADLINE_S,
                    conflict="too many concurrent placements; the workload was not created, retry")
            if evicted:  # the ledger gave their room away: the driver removes them before the create
                self.preemption.stop_evicted(on, evicted)
            return spec, wid, on, created

        plain = group is None and not nets and host is None
        return self._create_steps(resolve_in, alone, explain, batch=plain)

    def _create_steps(self, resolve_in: Callable[[Session], _Spec], alone: Callable[[], tuple[_Spec, int, str,
                      int | None]], explain: bool, *, batch: bool) -> Flow[WorkloadRecord]:
        """Claim (in the next batch when plain, else alone), then the driver call and confirmation."""
        if batch and self.batcher is not None:
            batched = yield Claim(resolve_in, explain)  # None: not for a batch, alone below
            if batched is not None:
                return (yield from self._confirm_flow(batched[0], batched[1], batched[2], None))
        spec, wid, host, created = yield Lone(alone)
        return (yield from self._confirm_flow(spec, wid, host, created))

    # ---- create: resolve, decide, claim, confirm -------------------------------------------------
    def _resolve(self, *args: object) -> _Spec:
        """_resolve_in in a read transaction of its own."""
        return self._read(lambda s: self._resolve_in(s, *args))  # type: ignore[arg-type]

    def _resolve_in(self, s: Session, project: str, name: str, kind: str, flavor: str | None,
                    demand: dict[str, float] | None, priority: int, group: str | None,
                    policy: GroupPolicy | None, required: dict[str, str], forbidden: dict[str, str],
                    pool: str | None, create_project: bool) -> _Spec:
        """Check references and the demand, and settle the group's policy (fixed by its first
        member; an empty group takes the next member's), in the caller's read transaction (a
        create reads the placement view in the same one); read-only: the claim writes."""
        # one prepared statement (store/prepared.py): this read runs for every create
        req = _REQUEST.first(s, {"p": project, "n": name, "f": flavor})
        pid = req.pid
        if pid is None and not create_project:
            raise NotFoundError(f"project {project!r} not found")
        if req.taken is not None:
            raise ConflictError(f"workload {name!r} already exists in project {project!r}")
        if flavor is not None:
            if req.flavor is None:
                raise NotFoundError(f"flavor {flavor!r} not found")
            d = {str(k): float(v) for k, v in req.flavor.items()}
        else:
            d = check_demand(resource_names(s), demand)
        check_gpu_demand(d)
        pool_id = None
        if pool is not None:
            pool_id = _POOL_ID.scalar(s, {"p": pool})
            if pool_id is None:
                raise NotFoundError(f"pool {pool!r} not found")
        if req.limits:  # fail fast; the claim re-checks under the quota's lock
            quotas.preview_limits(s, pid, req.limits, d, 1, project=project)
        gid, gpol = None, policy
        if group is not None:
            g = None if pid is None else \
                s.scalars(select(GroupRow).filter_by(project_id=pid, name=group)).first()
            if g is None:  # the claim creates it
                gpol = policy or GroupPolicy.SOFT_ANTI_AFFINITY
            else:
                gid, gpol = g.id, GroupPolicy(g.policy)
                if policy is not None and policy.value != g.policy:
                    if _has_members(s, g.id):
                        raise ConflictError(f"group {group!r} has policy {g.policy}, not {policy.value}")
                    gpol = policy  # an empty group takes the policy of its next member (claim)
        return _Spec(project, pid, name, kind, flavor, d, priority, gid, group, gpol, required,
                     forbidden, pool_id, pool, quota_free=pid is not None and not req.limits)

    def _decide(self, spec: _Spec, explain: bool = False, *, admit: bool = True,
                snap: PlacementView | None = None) -> tuple[Decision, _Target | None]:
        """Refresh the placement view and decide through its placement index (under the cache lock).
        Returns the decision and, when a host was chosen, the (host id, generation) the commit
        must find and the GPU devices the policy chose there (None: the ledger's rule).
        `admit`: apply HA admission control (a restart by HA does not: it is what it reserves for).
        `snap`: the view the caller refreshed under the cache lock it still holds."""
        with self.cache.lock:
            if snap is None:
                snap = self._read(self.cache.refresh)
            st = snap.state
            req = self._request(spec, snap)
            if admit and self.admission is not None:
                self.admission(snap, spec.pool_id, spec.pool, st.resources.vector(spec.demand))
            decision = decide(snap.placer(self.policy), req, full=explain)
            h = decision.host_index
            if h is None:
                return decision, None
            if self.cache.contended(snap.ids[h]) and (other := self.cache.steer(snap, req)) is not None:
                steered = decide(snap.placer(self.policy), other, full=explain)  # another replica fills h
                if steered.host_index is not None:
                    decision, h, req = steered, steered.host_index, other
            return decision, (snap.ids[h], int(snap.gens[h]), chosen_devices(self.policy, st, req, h))

    def _decide_sized(self, spec: _Spec, explain: bool = False, *, admit: bool = True,
                      snap: PlacementView | None = None) -> tuple[_Spec, Decision, _Target | None]:
        """_decide through the one fallback loop (shares.py `first_fit`): a declaration naming no
        pool that fits nowhere by what `max` sets aside is tried on each pool whose policy sets
        aside less, with that amount: (the spec decided, its decision, its target)."""
        with self.cache.lock:
            def attempt(sub: _Spec, pool_id: int | None) -> tuple[Decision, _Target | None]:
                on = sub if pool_id is None else replace(sub, pool_id=pool_id)
                return self._decide(on, explain, admit=admit, snap=snap or self.cache.view)

            first = self._decide(spec, explain, admit=admit, snap=snap)
            got, (decision, target) = first_fit(spec, attempt, lambda a: a[1] is not None, first=first)
            return got, decision, target  # its pool stays the request's: a fallback is not a constraint

    def _request(self, spec: _Spec, snap: PlacementView) -> Request:
        """The placement request of a spec on the view's state."""
        st = snap.state
        for r in spec.demand:
            if r not in st.resources:
                raise InvalidInputError(f"no host declares resource {r!r}")
        allowed = snap.pool_hosts(spec.pool_id) if spec.pool_id is not None else None
        if spec.host is not None:  # host_index: 404 for an unknown host
            pinned = np.array([st.host_index(spec.host)])
            allowed = pinned if allowed is None else np.intersect1d(allowed, pinned)
        req = Request(
            name=f"{spec.project}/{spec.name}", demand=st.resources.vector(spec.demand),
            required_labels=spec.required, forbidden_labels=spec.forbidden,
            group=group_key(spec.project, spec.group) if spec.group is not None else None,
            group_policy=spec.group_policy, priority=spec.priority, allowed_hosts=allowed,
        )
        return fit_devices(self.policy, st, req)

    def _preempt(self, spec: _Spec, failed: Decision) -> Plan | None:
        """No host: the eviction of lower classes that makes room (under the cache lock, on the view
        the failed decision used), or None."""
        if spec.priority_class == PRIORITY_CLASSES[0]:
            return None
        snap = self.cache.view
        if snap is None:
            return None
        return self.preemption.plan(snap, self._request(spec, snap), failed, spec.priority_class)

    def _place_and_claim(self, spec: _Spec, new_group: list[int] | None = None,
                         explain: bool = False, evicted: list[Victim] | None = None,
                         snap: PlacementView | None = None) -> tuple[int, str, _Spec]:
        """Decide and claim, once: (workload id, host, the spec as claimed: a declaration that named
        no pool is sized by the chosen host's pool, shares.py `on_host`), or Stale when the commit
        lost a race. The id of a group the claim created is appended to `new_group`; the workloads
        preempted to make room (services/preemption.py) to `evicted`."""
        with self.cache.lock:  # decision through claim: this process's creates never race each other
            plan = None
            with observe_placement() as outcome:  # poolvisor_placement_seconds
                spec, decision, target = self._decide_sized(spec, explain, snap=snap)
                if decision.host_index is None:
                    plan = self._preempt(spec, decision)
                    if plan is None:
                        outcome[0] = "no_valid_host"
                    else:
                        decision, target = plan.decision, (plan.host_id, plan.generation, None)
            require_host(decision)
            assert target is not None and decision.host is not None
            if spec.sizing is not None and self.cache.view is not None:
                spec = on_host(spec, self.cache.view.pool_of, decision.host_index)
            host_id, gen, _gpus = target
            try:
                wid, created = self.ctx.write_once(partial(self._claim, spec=spec, target=target,
                                                           decision=decision, plan=plan))
                # (not grouped: the cache lock is held, and the writer thread may be waiting on it to
                # claim a batch; the lock serializes these claims anyway, a group would hold one)
            except Stale as e:
                if not isinstance(e, _GroupChanged):  # the host moved: pass it over for a while (steer)
                    self.cache.lost_race(host_id)
                raise
            group = group_key(spec.project, spec.group) if spec.group is not None else None
            if plan is None:
                self.cache.written(host_id, gen + 1, spec.demand, group, key=f"{spec.project}/{spec.name}",
                                   priority=spec.priority, kind=spec.kind)  # the guard matched gen: exact
            elif evicted is not None:  # several changes on the host: the next refresh reloads it
                evicted.extend(plan.victims)
        if created is not None and new_group is not None:
            new_group.append(created)
        return wid, decision.host, spec

    def _claim(self, s: Session, *, spec: _Spec, target: _Target,
               decision: Decision, plan: Plan | None = None) -> tuple[int, int | None]:
        host_id, gen, gpus = target
        project_id = spec.project_id if spec.project_id is not None else \
            self._create_project_in(s, spec.project)
        gid, created = self._claim_group(s, spec, project_id)
        if gid is not None and spec.group_policy in HARD_POLICIES:
            # Members of a hard group must see each other: bumping the group's row locks it until
            # commit (PostgreSQL row lock; SQLite's writer lock), then the policy is re-verified
            # against the members as committed.
            r = s.execute(update(GroupRow).where(GroupRow.id == gid)
                          .values(generation=GroupRow.generation + 1))
            if r.rowcount != 1:  # type: ignore[attr-defined]
                raise ConflictError(f"group {spec.group!r} was removed concurrently; retry")
            self._check_group_unchanged(s, spec, host_id, gid)
        now = datetime.now(UTC)
        s.flush()  # the group or project made above, before the Core INSERT that names them
        explanation = decision.explanation.to_dict()
        if spec.sizing is not None:  # the allocation policy that sized the claim (shares.py)
            explanation["sized_by"] = spec.sizing.policy
        claim_gen: int | None = gen
        if plan is not None:  # evict first, under the host guard; the claim below then needs no generation
            self.preemption.evict(s, plan, f"{spec.project}/{spec.name}", spec.priority_class)
            claim_gen = None
            explanation["preempted"] = [{"workload": f"{v.project}/{v.name}", "class": v.priority_class,
                                         "was": v.state} for v in plan.victims]
        lease = self.leases.stamp_values()  # the lease starts here, inside the claim's transaction
        values = {
            "project_id": project_id, "name": spec.name, "kind": spec.kind, "state": PLACING,
            "host_id": host_id, "group_id": gid, "flavor": spec.flavor, "demand": spec.demand,
            "priority": spec.priority, "explanation": explanation, "priority_class": spec.priority_class,
            "resource_spec": spec.resource_spec,
            "constraints": {"pool": spec.pool, "required_labels": spec.required,
                            "forbidden_labels": spec.forbidden},
            "created_at": now, "updated_at": now, **lease}
        quota_project: int | None = project_id  # the ledger checks the project's quota under its lock
        try:  # a prepared INSERT: the row is never read back as an ORM object in this transaction
            inserted = None
            if spec.quota_free and spec.project_id is not None:  # no quota seen: the INSERT re-checks
                inserted = _INSERT_UNLESS_QUOTA.scalar(s, values)
                if inserted is not None:
                    quota_project = None
            if inserted is None:
                inserted = _INSERT_WORKLOAD.scalar(s, values)
                assert inserted is not None
        except IntegrityError:
            raise ConflictError(
                f"workload {spec.name!r} already exists in project {spec.project!r}") from None
        wid = int(inserted)
        ledger.claim(s, host_id, claim_gen, spec.demand, wid, gpus, quota_project=quota_project)
        self.leases.restamp_if_late(s, [wid], lease["lease_expires"])
        attach_nics(s, project_id, wid, f"workload {spec.project}/{spec.name}", spec.networks)
        self._event(s, "workload.placed", f"workload/{spec.project}/{spec.name}",
                    f"workload {spec.name} placed on {decision.host}: {decision.explanation.rule}",
                    project=spec.project, data={"host": decision.host, "demand": spec.demand})
        return wid, gid if created else None

    def _claim_group(self, s: Session, spec: _Spec, project_id: int) -> tuple[int | None, bool]:
        """(group id, created) for the claim: a new group is created, or an empty group given the
        requested policy, here, in the claim's transaction. _GroupChanged when members fixed
        another policy since resolve (decisions use the group's name and policy, not its id)."""
        if spec.group is None or spec.group_policy is None:
            return None, False
        want = spec.group_policy.value
        g = s.scalars(select(GroupRow).filter_by(project_id=project_id, name=spec.group)).first()
        if g is None:
            g = GroupRow(project_id=project_id, name=spec.group, policy=want, generation=0)
            s.add(g)
            try:
                s.flush()
            except IntegrityError:
                raise _GroupChanged() from None  # created concurrently (perhaps with another policy)
            return g.id, True
        if g.policy != want:  # an empty group takes the policy of its next member
            # lock the row first (PostgreSQL), then look at its members as committed
            s.execute(update(GroupRow).where(GroupRow.id == g.id).values(generation=GroupRow.generation + 1))
            if _has_members(s, g.id):
                raise _GroupChanged()
            s.execute(update(GroupRow).where(GroupRow.id == g.id).values(policy=want))
        return g.id, False

    def _check_group_unchanged(self, s: Session, spec: _Spec, host_id: int, group_id: int) -> None:
        """Under the group lock, re-verify the hard policy against the members as committed."""
        assert spec.group_policy is not None
        check_group_members(s, spec.group_policy, host_id, group_id)

    def _confirm_flow(self, spec: _Spec, wid: int, host: str, new_group: int | None) -> Flow[WorkloadRecord]:
        """The driver creates the claimed workload, then it is marked running (its lease renewed
        while the driver works); a driver's refusal removes the claim again."""
        def tx(s: Session) -> WorkloadRecord | None:
            # the usual case in one statement: still placing under this process's lease
            row = _CONFIRM.first(s, {"w": wid, "owner": self.leases.owner, "now": datetime.now(UTC)})
            if row is not None:
                self._event(s, "workload.created", f"workload/{spec.project}/{spec.name}",
                            f"workload {spec.name} running on {host}", project=spec.project,
                            data={"host": host})
                return WorkloadRecord(spec.name, spec.project, spec.kind, RUNNING, host, dict(spec.demand),
                                      spec.priority, spec.group, as_utc(row.created_at), row.explanation,
                                      workload_shares(s, [wid]).get(wid, []) if "gpu" in spec.demand else [],
                                      priority_class=spec.priority_class, resources=spec.resource_spec)
            w = s.get(WorkloadRow, wid)
            if w is None:  # only a repair removes a placing row: this use case outlived its lease
                return None
            if w.state != PLACING:  # e.g. its host failed meanwhile: report what it is now
                return self._workload_records(s, [w])[0]
            if not self.leases.owns(w):  # stalled past the lease: repair took it over and decides
                raise ConflictError(f"workload {spec.name!r}: its creation outlived its lease and is "
                                    "being repaired; check its state and retry if it is gone")
            w.state, w.updated_at = RUNNING, datetime.now(UTC)
            self.leases.clear(w)
            self._event(s, "workload.created", f"workload/{spec.project}/{spec.name}",
                        f"workload {spec.name} running on {host}", project=spec.project, data={"host": host})
            return WorkloadRecord(spec.name, spec.project, spec.kind, RUNNING, host, dict(spec.demand),
                                  spec.priority, spec.group, as_utc(w.created_at), w.explanation,
                                  workload_shares(s, [wid]).get(wid, []) if "gpu" in spec.demand else [],
                                  priority_class=spec.priority_class, resources=spec.resource_spec)

        with self.leases.hold([wid]):
            dw = _driver_workload(spec)
            try:
                op = "create" if not spec.networks else ""  # (plugging NICs is not quick)
                yield Call(partial(self._driver_create, spec, host, dw), host, op)
            except (DriverError, DriverRefusal) as e:  # 503, or 409 when the driver refuses the workload
                why = e.message
                yield Tx(lambda s: self._undo_create(s, spec, wid, host, why, new_group), grouped=False)
                raise type(e)(f"workload {spec.name!r} not created: {e.message}", e.detail) from None
            rec = yield Tx(tx)  # may share its commit with other requests' (store/group.py)
            if rec is None:
                with contextlib.suppress(PoolvisorError):  # the database says it is gone: so should it be
                    yield Call(partial(self.drivers.lifecycle(host).delete, host, dw), host, "delete")
                raise ConflictError(f"workload {spec.name!r} was not created: its creation outlived its "
                                    "lease and repair rolled it back; retry")
            return rec

    def _driver_create(self, spec: _Spec, host: str, dw: DriverWorkload) -> None:
        self.drivers.lifecycle(host).create(host, dw)
        if spec.networks:  # its NICs on the host's networks (only the claim attaches NICs)
            plug_nics(self.ctx, spec.project, spec.name, host, dw)

    def _undo_create(self, s: Session, spec: _Spec, wid: int, host: str, why: str,
                     new_group: int | None = None) -> None:
        """The driver refused: remove the workload and the group the claim created (the audit
        events of the attempt stay)."""
        w = s.get(WorkloadRow, wid)
        if w is not None and (w.state != PLACING or self.leases.owns(w)):  # else repair owns it
            ledger.release(s, w)
            s.delete(w)
            s.flush()
        _drop_empty_group(s, group_id=new_group)
        self._event(s, "workload.create_failed", f"workload/{spec.project}/{spec.name}",
                    f"workload {spec.name} could not be created on {host}: {why}", project=spec.project)

    # ---- queries -----------------------------------------------------------------------------
    def list_workloads(self, project: str | None = None) -> list[WorkloadRecord]:
        def tx(s: Session) -> list[WorkloadRecord]:
            q = select(WorkloadRow).order_by(WorkloadRow.project_id, WorkloadRow.name)
            if project is not None:
                q = q.where(WorkloadRow.project_id == self._project(s, project).id)
            return self._workload_records(s, s.scalars(q))

        return self._read(tx)

    def get_workload(self, project: str, name: str) -> WorkloadRecord:
        return self._read(lambda s: self._workload_records(s, [self._workload(s, project, name)[0]])[0])

    # ---- lifecycle (lifecycle.py) --------------------------------------------------------------
    def delete_workload(self, project: str, name: str) -> None:
        self.lifecycle.delete_workload(project, name)

    def workload_action(self, project: str, name: str, action: str) -> WorkloadRecord:
        return self.lifecycle.workload_action(project, name, action)

    def migrate_workload(self, project: str, name: str, host: str | None = None, *,
                         task_id: int | None = None) -> WorkloadRecord:
        return self.lifecycle.migrate_workload(project, name, host, task_id=task_id)

    def submit_migrate(self, project: str, name: str, host: str | None = None) -> TaskRecord:
        return self.lifecycle.submit_migrate(project, name, host)


def check_group_members(s: Session, policy: GroupPolicy, host_id: int, group_id: int) -> None:
    """Stale unless a new member of the group on `host_id` keeps the hard `policy` with the members
    as committed (the caller holds the group's lock; batch.py uses it too: one rule)."""
    rows = s.execute(select(HostRow.id, HostRow.name, HostRow.domain)
                     .join(WorkloadRow, WorkloadRow.host_id == HostRow.id)
                     .where(WorkloadRow.group_id == group_id,
                            WorkloadRow.state.in_(HOLDING_STATES))).all()
    if not rows:
        return
    target = s.get(HostRow, host_id)
    assert target is not None
    names = {n for _i, n, _d in rows}
    domains = {d for _i, _n, d in rows}
    ok = {
        GroupPolicy.AFFINITY: names == {target.name},
        GroupPolicy.ANTI_AFFINITY: target.name not in names,
        GroupPolicy.DOMAIN_SPREAD: target.domain not in domains,
    }.get(policy, True)
    if not ok:
        raise Stale()


def _has_members(s: Session, group_id: int) -> bool:
    q = select(WorkloadRow.id).where(WorkloadRow.group_id == group_id).limit(1)
    return s.scalars(q).first() is not None


def _drop_empty_group(s: Session, *, group_id: int | None) -> None:
    if group_id is not None and not _has_members(s, group_id):
        s.execute(delete(GroupRow).where(GroupRow.id == group_id))


def _finished(value: WorkloadRecord) -> Flow[WorkloadRecord]:
    """A flow with nothing left to do (a dry run)."""
    return value
    yield  # (never reached: it makes this function a generator)


def _driver_workload(spec: _Spec) -> DriverWorkload:
    return DriverWorkload(f"{spec.project}/{spec.name}", spec.kind, spec.demand, spec=spec.resource_spec)
