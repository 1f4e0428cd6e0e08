"""The live controller: one reconcile round over every pool (ControllerLoop runs it periodically).

A round (`reconcile`):

1. **measure**: every up host's driver that reports stats (Capability.STATS) gives each
   workload's CPU utilization, recorded as utilization samples (`svc.utilization`), so the
   planner, what-if and the consolidation plan all read the same, real history;
2. **power sync**: a standby host whose driver finished booting becomes up again;
3. **plan**, per pool: the one shared planner, ``plan_balancing`` (policies/balancing/planner.py),
   with the controller's policy (``adaptive`` by default: overload relief and underload
   evacuation), then, when that moves nothing, with ``SpreadPolicy`` (imbalance reduction);
4. **check**: every move must pass the placement filters (capacity, labels, affinity and
   anti-affinity, failure-domain spread: the pipeline placement uses) on the state the earlier
   moves leave, keep its destination under the band's top, and pass the balancing limits
   (policies/balancing/limits.py: cool-down, no ping-pong, net gain for balancing moves,
   migration slots per host and per pool); a host is evacuated only if all its workloads can go;
5. **act**: migrations are queued as `migrate` tasks (the task executor runs them); hosts are
   powered off (empty, while the others stay under the band's top) or on (when the pool's load
   goes above it) through their driver (Capability.POWER; else skipped with the reason).

Every action is an event (``controller.*``) carrying its explanation: the rule, its figures and
the alternatives. Pause/resume is a row in the store (every replica reads it); the last round's
summary too. Leader election gates the loop, not this service (ControllerLoop's ``is_leader``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.domain.models import GroupPolicy, HostState
from poolvisor.drivers.base import DriverError
from poolvisor.drivers.protocols import POWER_BOOTING, Capability, supports
from poolvisor.policies.balancing.actions import MIGRATE, Action, Explanation
from poolvisor.policies.balancing.limits import Limits, admit, imbalance, move_gains
from poolvisor.policies.balancing.planner import SpreadPolicy, plan_balancing
from poolvisor.policies.balancing.soft import describe, rules_of, soft_penalty
from poolvisor.policies.balancing.view import LIVE_CPU_SCALE, LIVE_POWER, BalancingView
from poolvisor.policies.placement import Request
from poolvisor.policies.placement.pipeline import run_filters
from poolvisor.services.base import ServiceBase
from poolvisor.services.batch import BatchService, balancing_policy
from poolvisor.services.catalog import CatalogService
from poolvisor.services.context import ServiceContext
from poolvisor.services.host_power import HostPowerService
from poolvisor.services.hosts import HostService
from poolvisor.services.placement_cache import group_key
from poolvisor.services.records import RUNNING, TASK_QUEUED, TASK_RUNNING, TASK_SUCCEEDED
from poolvisor.services.tasks import MIGRATE as MIGRATE_TASK
from poolvisor.services.tasks import TaskService
from poolvisor.services.utilization import UtilizationService
from poolvisor.services.workloads import WorkloadService
from poolvisor.state.cluster import ClusterState
from poolvisor.store.rows import GroupRow, HostRow, MetaRow, ProjectRow, TaskRow, WorkloadRow

log = logging.getLogger("poolvisor.controller")

STATE_KEY = "controller"  # MetaRow: {"paused", "by", "at"}
LAST_KEY = "controller.last"  # MetaRow: the last round's summary
CPU, MEMORY = "vcpu", "memory_mib"
#: the rules the planner gives an evacuation (a host emptied to save power), not a balancing move
EVACUATION_RULES = ("underload",)
RECENT_MOVES = 2000  # the migrations the cool-down looks back over, at most
MAX_CONTENDED = 50  # contended workloads kept in the stored round summary (the count is exact)


@dataclass(frozen=True)
class ControllerConfig:
    """``policy``: the planner's policy (plan_balancing by name); ``limits``: the balancing limits;
    ``band_low``/``band_high``: the utilization band (measured CPU, reserved memory): hosts
    below ``band_low`` may be evacuated, no move takes a host above ``band_high``, hosts are
    switched off while the pool stays under ``band_high`` and on when it goes above;
    ``spread_gap``: the imbalance pass's trigger; ``power``: power management on;
    ``min_hosts``: hosts kept on per pool; ``spare_hosts``: empty hosts kept on (headroom for
    new workloads while a standby host boots); ``bandwidth_mibps``: a migration's speed (its cost);
    ``soft_cost``: what a balancing move pays, in imbalance, per soft-affinity/anti-affinity pair it
    breaks (policies/balancing/soft.py; the planner's spread policy weighs the same pairs)."""

    policy: str = "adaptive"
    limits: Limits = field(default_factory=Limits)
    band_low: float = 0.3
    band_high: float = 0.8
    spread_gap: float = 0.1
    power: bool = True
    min_hosts: int = 1
    spare_hosts: int = 1
    bandwidth_mibps: float = 1250.0
    soft_cost: float = 0.02

    def __post_init__(self) -> None:
        if not 0 <= self.band_low < self.band_high <= 1:
            raise InvalidInputError("the controller's band must satisfy 0 <= low < high <= 1")
        if self.spare_hosts < 0:
            raise InvalidInputError("spare_hosts must be >= 0")
        if not self.soft_cost >= 0:
            raise InvalidInputError("soft_cost must be >= 0")
        if self.min_hosts < 1 or not self.bandwidth_mibps > 0 or not self.spread_gap > 0:
            raise InvalidInputError("min_hosts >= 1, bandwidth > 0 and spread gap > 0 are required")
        balancing_policy(self.policy, None)  # 422 for an unknown policy, now


@dataclass(frozen=True)
class ControllerStatus:
    paused: bool
    changed_by: str | None
    changed_at: str | None
    policy: str
    last_round: dict[str, Any] | None


@dataclass
class _Work:
    """A workload the checks need: its key, demand, hard constraints."""

    key: str
    project: str
    name: str
    demand: dict[str, float]
    required: dict[str, str]
    forbidden: dict[str, str]
    group: str | None
    group_policy: GroupPolicy | None


@dataclass
class RoundReport:
    """What one round did (also the persisted `last_round` of the status)."""

    at: float
    samples: int = 0
    migrations: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    power: list[dict[str, Any]] = field(default_factory=list)
    imbalance: dict[str, float] = field(default_factory=dict)  # pool -> std-dev of host load
    notes: list[str] = field(default_factory=list)
    # workloads their host gives less than they ask (shares under contention, a driver with
    # Capability.SHARES): {"workload", "host", "granted", "wanted"}, the largest shortfall first
    contended: list[dict[str, Any]] = field(default_factory=list)


class ControllerService(ServiceBase):
    """Status, pause/resume, and the reconcile round (module doc)."""

    def __init__(
        self,
        ctx: ServiceContext,
        catalog: CatalogService,
        hosts: HostService,
        workloads: WorkloadService,
        tasks: TaskService,
        utilization: UtilizationService,
        batch: BatchService,
        host_power: HostPowerService,
        config: ControllerConfig | None = None,
    ) -> None:
        super().__init__(ctx)
        self.catalog, self.hosts, self.workloads = catalog, hosts, workloads
        self.tasks, self.utilization, self.batch = tasks, utilization, batch
        self.host_power = host_power  # standby hosts back up once booted (shared with the queue)
        self.config = config or ControllerConfig()

    # ---- status, pause, resume -----------------------------------------------------------------
    def status(self) -> ControllerStatus:
        def tx(s: Session) -> tuple[dict[str, Any], dict[str, Any] | None]:
            st, last = s.get(MetaRow, STATE_KEY), s.get(MetaRow, LAST_KEY)
            return (
                json.loads(st.value) if st is not None and st.value else {},
                json.loads(last.value) if last is not None and last.value else None,
            )

        st, last = self._read(tx)
        return ControllerStatus(
            bool(st.get("paused", False)), st.get("by"), st.get("at"), self.config.policy, last
        )

    def paused(self) -> bool:
        return self.status().paused

    def pause(self, by: str = "admin") -> ControllerStatus:
        return self._set_paused(True, by)

    def resume(self, by: str = "admin") -> ControllerStatus:
        return self._set_paused(False, by)

    def _set_paused(self, paused: bool, by: str) -> ControllerStatus:
        def tx(s: Session) -> None:
            row = s.get(MetaRow, STATE_KEY)
            if row is None:
                row = MetaRow(key=STATE_KEY, value="{}")
                s.add(row)
            was = bool(json.loads(row.value or "{}").get("paused", False))
            row.value = json.dumps({"paused": paused, "by": by, "at": _iso(time.time())})
            if was != paused:
                word = "paused" if paused else "resumed"
                self._event(
                    s, f"controller.{word}", "controller", f"controller {word} by {by}", data={"by": by}
                )

        self._write(tx)
        return self.status()

    # ---- the round ---------------------------------------------------------------------------
    def reconcile(self, now: float | None = None) -> RoundReport:
        """One round (module doc) at epoch time `now` (default: the wall clock)."""
        at = time.time() if now is None else float(now)
        rep = RoundReport(at)
        latest = self.collect(at, rep)
        rep.samples = len(latest)
        self._power_sync(rep)
        for pool in self.catalog.list_pools():
            try:
                self._pool_round(pool.name, at, rep, latest)
            except PoolvisorError as e:  # one pool's trouble does not stop the others
                rep.notes.append(f"pool {pool.name}: {e.message}")
        self._write(lambda s: _put(s, LAST_KEY, json.dumps(_summary(rep))))
        return rep

    def collect(self, now: float, rep: RoundReport | None = None) -> dict[str, float]:
        """Record each running workload's CPU utilization from its host's driver; returns them
        ("project/name" -> fraction of its CPU). With `rep`, the workloads a contended host gives
        less than they ask (what shares granted them) go into its `contended`."""

        def tx(s: Session) -> list[tuple[str, str]]:
            q = (
                select(ProjectRow.name, WorkloadRow.name, HostRow.name)
                .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                .join(HostRow, HostRow.id == WorkloadRow.host_id)
                .where(WorkloadRow.state == RUNNING, HostRow.state == HostState.UP.label)
            )
            return [(f"{p}/{n}", h) for p, n, h in s.execute(q)]

        by_host: dict[str, set[str]] = {}
        for key, host in self._read(tx):
            by_host.setdefault(host, set()).add(key)
        samples: list[tuple[str, float, float]] = []
        for host, keys in sorted(by_host.items()):
            if not supports(self.drivers.driver_of(host), Capability.STATS):
                continue
            try:
                got = self.drivers.workload_stats(host).workload_stats(host)
            except DriverError as e:
                log.warning("controller: no stats from host %s: %s", host, e.message)
                continue
            samples.extend(
                (k, now, min(1.0, max(0.0, float(v.cpu_util))))
                for k, v in sorted(got.items())
                if k in keys and v.state == RUNNING
            )
            if rep is not None:
                rep.contended.extend(_contended(host, keys, got))
        if rep is not None:
            rep.contended.sort(key=lambda c: (-c["short"], c["workload"]))
        if samples:
            self.utilization.record_utilization(samples)
        return {k: u for k, _, u in samples}

    # ---- power ---------------------------------------------------------------------------------
    def _power_sync(self, rep: RoundReport) -> None:
        """Standby hosts whose driver reports them on (booted after a power-on) are up again."""
        for h in self.host_power.sync():
            rep.power.append({"host": h, "action": "up", "rule": "booted"})

    # ---- one pool ------------------------------------------------------------------------------
    def _pool_round(self, pool: str, now: float, rep: RoundReport, latest: dict[str, float]) -> None:
        cfg = self.config
        st = self.batch.pool_state(pool, windows=True)
        t = st.workloads
        keys = [str(k) for k in t.keys]
        view = BalancingView(
            st, LIVE_POWER, cpu_scale=LIVE_CPU_SCALE, check_ram=True, mig_bw_mb_s=cfg.bandwidth_mibps
        )
        # CPU requested now: this round's measurement (the history's buckets average 5 minutes)
        now_u = np.array([latest.get(k, np.nan) for k in keys]) if keys else np.zeros(0)
        view.requested = np.where(np.isnan(now_u), view.request(), now_u * view.workload_cpu())
        load, used, cap, wl = _load(st, view)
        up = st.up
        count = np.bincount(t.host[t.host >= 0], minlength=st.n)
        active = up  # powered-on hosts (standby ones are out of the balance)
        rep.imbalance[pool] = round(imbalance(load, active), 4)
        works = self._works(keys)
        view.soft = rules_of({r: _rule(works.get(k)) for r, k in enumerate(keys)}) or None
        hist = self._history(now)
        busy = np.zeros(st.n, dtype=np.int64)
        pool_busy = 0
        for w, (src, dst) in hist.inflight.items():
            del w
            for h in (src, dst):
                if h in st.index:
                    busy[st.host_index(h)] += 1
            pool_busy += int(src in st.index or dst in st.index)
        # 1. the policy (overload relief, evacuations); 2. imbalance when that moves nothing
        started: list[dict[str, Any]] = []
        args = (st, wl, works, keys, load, used, cap, active, busy, pool_busy, hist, now)
        if t.n:
            moves = plan_balancing(view, balancing_policy(cfg.policy, None), power=False).of_kind(MIGRATE)
            started = self._act(pool, rep, moves, *args, needs_gain=False)
            if not started:
                moves = plan_balancing(view, SpreadPolicy(max_gap=cfg.spread_gap), power=False).of_kind(
                    MIGRATE
                )
                started = self._act(pool, rep, moves, *args, needs_gain=True)
        rep.migrations.extend(started)
        if cfg.power:
            dests = {m["to"] for m in started if m}
            self._power(pool, st, used, cap, count, busy, dests, rep)

    def _act(
        self, pool: str, rep: RoundReport, moves: list[Action], *args: Any, needs_gain: bool
    ) -> list[dict[str, Any]]:
        ok, held = self._check(moves, *args, needs_gain=needs_gain)
        rep.held.extend(held)
        keys, names = args[3], args[0].names
        return [m for m in (self._start(pool, a, keys, names, args[-1]) for a in ok) if m]

    def _check(
        self,
        moves: list[Action],
        st: ClusterState,
        wls: np.ndarray,
        works: dict[str, _Work],
        keys: list[str],
        load: np.ndarray,
        used: np.ndarray,
        cap: np.ndarray,
        active: np.ndarray,
        busy: np.ndarray,
        pool_busy: int,
        hist: _History,
        now: float,
        *,
        needs_gain: bool,
    ) -> tuple[list[Action], list[dict[str, Any]]]:
        """The moves that may start now (module doc, step 4) and the others with their reason."""
        cfg = self.config
        held: list[dict[str, Any]] = []
        if not moves:
            return [], held
        names = st.names

        def hold(a: Action, why: str) -> None:
            held.append(
                {
                    "workload": keys[a.workload],
                    "from": names[a.src],
                    "to": names[a.dst],
                    "rule": a.rule,
                    "reason": why,
                }
            )

        # constraints and the band, on the state the earlier moves leave (sequential by nature)
        full = self._constraint_state()
        after = used.copy()
        feasible: list[Action] = []
        blocked_src: set[int] = set()
        soft_of: dict[int, float] = {}  # id(action) -> soft pairs it breaks (net)
        for a in moves:
            w = works.get(keys[a.workload])
            wl = wls[:, a.workload]
            why: str | None = None
            if w is not None and _rule(w) is not None:
                a = self._soft(a, w, full, st, after, wl, cap, active)
                soft_of[id(a)] = float(a.explanation.figures.get("soft_penalty", 0.0))
            if a.rule in EVACUATION_RULES and not cfg.power:
                why = "power management is off: no host is emptied"
            elif a.rule in EVACUATION_RULES and max(load[0, a.src], load[1, a.src]) >= cfg.band_low:
                why = f"the source is not below the band ({cfg.band_low:.0%})"
            elif needs_gain and max(load[0, a.src], load[1, a.src]) < cfg.band_low:
                why = f"the source is below the band ({cfg.band_low:.0%}): nothing to relieve"
            elif np.any((after[:, a.dst] + wl) / np.maximum(cap[:, a.dst], 1e-9) > cfg.band_high):
                why = f"the destination would go above the band ({cfg.band_high:.0%})"
            elif w is None:
                why = "the workload changed since the plan"
            else:  # last: it records the move in `full` when it passes
                why = self._constraint(full, w, names[a.src], names[a.dst])
            if why is not None:
                hold(a, why)
                if a.rule in EVACUATION_RULES:
                    blocked_src.add(a.src)
                continue
            after[:, a.src] -= wl
            after[:, a.dst] += wl
            feasible.append(a)
        kept = []
        for a in feasible:  # an evacuation only when all of the host's workloads can go
            if a.rule in EVACUATION_RULES and a.src in blocked_src:
                hold(a, "the host cannot be emptied: another of its workloads has nowhere to go")
            else:
                kept.append(a)
        if not kept:
            return [], held
        src = np.array([a.src for a in kept], dtype=np.int64)
        dst = np.array([a.dst for a in kept], dtype=np.int64)
        wl = wls[:, [a.workload for a in kept]]  # (R, M)
        w_frac = np.stack([wl / np.maximum(cap[:, src], 1e-9), wl / np.maximum(cap[:, dst], 1e-9)])
        gain = move_gains(load, active, w_frac, src, dst)
        mem = np.array([works[keys[a.workload]].demand.get(MEMORY, 0.0) for a in kept])
        mig_cost = cfg.limits.cost_per_s * mem / cfg.bandwidth_mibps
        soft_c = cfg.soft_cost * np.maximum([soft_of.get(id(a), 0.0) for a in kept], 0.0)
        cost = mig_cost + soft_c
        since = np.array([now - hist.last_move.get(keys[a.workload], -np.inf) for a in kept])
        returns = np.array([names[a.dst] in hist.left.get(keys[a.workload], ()) for a in kept], dtype=bool)
        needs = np.full(len(kept), needs_gain)
        ok, reasons = admit(
            src,
            dst,
            since_moved=since,
            returns=returns,
            net_gain=gain - cost,
            needs_gain=needs,
            busy=busy,
            pool_busy=pool_busy,
            limits=cfg.limits,
        )
        out = []
        for k, a in enumerate(kept):
            figures = dict(a.explanation.figures)
            figures.update(
                {"imbalance_gain": round(float(gain[k]), 5), "migration_cost": round(float(mig_cost[k]), 5)}
            )
            if soft_c[k] > 0:
                figures["soft_cost"] = round(float(soft_c[k]), 5)
            a2 = a._replace(explanation=Explanation(a.rule, figures, a.explanation.alternatives))
            if ok[k]:
                out.append(a2)
            else:
                hold(a2, reasons[k])
        return out, held

    def _soft(self, a: Action, w: _Work, full: ClusterState, st: ClusterState, after: np.ndarray,
              wl: np.ndarray, cap: np.ndarray, active: np.ndarray) -> Action:
        """`a` weighed for `w`'s soft group rule (soft.py) on the state the earlier moves leave:
        when it would break the rule and another powered-on host keeps it (inside the band,
        through the placement filters), the move goes there instead; else it stays as planned,
        bent, with the penalty in its figures (a balancing move pays for it: `soft_cost`)."""
        rule = _rule(w)
        assert rule is not None
        names = st.names
        fidx = np.array([full.host_index(n) for n in names], dtype=np.int64)
        pen = soft_penalty(full, rule, int(fidx[a.src]), fidx)
        figures = dict(a.explanation.figures)
        alts = list(a.explanation.alternatives)
        planned = float(pen[a.dst])
        if planned > 0:
            fits = np.all((after + wl[:, None]) / np.maximum(cap, 1e-9) <= self.config.band_high, axis=0)
            ok = active & fits & (pen < planned)
            ok[a.src] = ok[a.dst] = False
            for h in sorted(np.flatnonzero(ok).tolist(), key=lambda i: (pen[i], after[0, i] / cap[0, i])):
                trial = full.copy()
                if self._constraint(trial, w, names[a.src], names[h]) is None:
                    figures.update({"soft_penalty": float(pen[h]), "soft_penalty_planned": planned})
                    alts.insert(0, f"{names[a.dst]} (planned; it bends {describe(rule, planned)})")
                    return a._replace(dst=h, explanation=Explanation(a.rule, figures, tuple(alts)))
            bent = f"bends {describe(rule, planned)}"
            alts = [x for x in alts if x != bent]  # the planner may have said it already
            alts.insert(0, f"{bent}: no powered-on host keeps the rule")
        figures["soft_penalty"] = planned
        return a._replace(explanation=Explanation(a.rule, figures, tuple(alts)))

    def _constraint_state(self) -> ClusterState:
        with self.cache.lock:
            snap = self._read(self.cache.refresh)
            return snap.state.subset(list(range(snap.state.n)))

    def _constraint(self, st: ClusterState, w: _Work, src: str, dst: str) -> str | None:
        """None when `w` may leave `src` for `dst` under the placement filters (hard constraints),
        applied to `st` (the move is recorded there); else which filter refuses it."""
        s, d = st.host_index(src), st.host_index(dst)
        demand = st.resources.vector({k: v for k, v in w.demand.items() if k in st.resources})
        grp = group_key(w.project, w.group) if w.group is not None else None
        st.release(s, demand, grp)
        req = Request(
            name=w.key,
            demand=demand,
            required_labels=w.required,
            forbidden_labels=w.forbidden,
            group=grp,
            group_policy=w.group_policy,
            allowed_hosts=np.array([d]),
        )
        alive, reports = run_filters(st, req, self.policy)
        if alive[d]:
            st.allocate(d, demand, grp, force=True)
            return None
        st.allocate(s, demand, grp, force=True)
        for r in reports:
            if r.rejected:
                return f"placement filter {r.filter}: {', '.join(r.reasons) or 'refused'}"
        return "placement filters refuse it"

    def _start(self, pool: str, a: Action, keys: list[str], names: list[str], now: float) -> dict[str, Any]:
        """Queue the move as a migrate task and record the event with its explanation."""
        key, src, dst = keys[a.workload], names[a.src], names[a.dst]
        project, name = key.split("/", 1)
        expl = a.explanation.to_dict()
        lc = self.workloads.lifecycle
        try:
            task = self.tasks.submit(
                MIGRATE_TASK,
                project,
                f"workload/{key}",
                {"project": project, "name": name, "host": dst, "by": "controller", "at": now},
                lambda s: lc.migration_source(s, project, name, dst)[0].id,
            )
        except PoolvisorError as e:
            msg = f"controller: {key} stays on {src}: {e.message}"
            self._write(
                lambda s: self._event(
                    s,
                    "controller.held",
                    f"workload/{key}",
                    msg,
                    project=project,
                    data={"from": src, "to": dst, **expl},
                )
            )
            return {}
        data = {"pool": pool, "from": src, "to": dst, "task": task.id, **expl}
        self._write(
            lambda s: self._event(
                s,
                "controller.migrate",
                f"workload/{key}",
                f"controller: migrate {key} {src} -> {dst} ({a.rule})",
                project=project,
                data=data,
            )
        )
        return {"workload": key, **data}

    def _power(
        self,
        pool: str,
        st: ClusterState,
        used: np.ndarray,
        cap: np.ndarray,
        count: np.ndarray,
        busy: np.ndarray,
        dests: set[str],
        rep: RoundReport,
    ) -> None:
        """Switch empty hosts off while the rest stays under the band's top; switch one standby
        host on when the pool's up hosts are above it (module doc, step 5)."""
        cfg = self.config
        names = st.names
        up = st.up
        on = up.copy()
        total = used.sum(axis=1)
        alloc, allocatable = st.allocated, st.capacity

        def level(mask: np.ndarray) -> np.ndarray:
            """(measured CPU, reserved memory, the fullest reserved resource) over the `mask` hosts."""
            c = cap[:, mask].sum(axis=1)
            lv = np.where(c > 0, total / np.maximum(c, 1e-9), np.inf)
            a = allocatable[:, mask].sum(axis=1)
            res = alloc[:, mask].sum(axis=1)
            booked = np.where(a > 0, res / np.maximum(a, 1e-9), np.where(res > 0, np.inf, 0.0))
            return np.append(lv, booked.max(initial=0.0))

        def figures_of(lv: np.ndarray, suffix: str = "") -> dict[str, float]:
            return {
                f"pool_cpu{suffix}": round(float(lv[0]), 4),
                f"pool_memory{suffix}": round(float(lv[1]), 4),
                f"pool_reserved{suffix}": round(float(lv[2]), 4),
                "band_high": cfg.band_high,
            }

        now_level = level(on)
        if np.any(now_level > cfg.band_high):
            standby = [h for h in self.hosts.list_hosts(pool) if h.state == HostState.STANDBY.label]
            if any(self._booting(h.name) for h in standby):
                rep.notes.append(f"pool {pool}: above the band; a host is booting already")
                return
            for rec in sorted(standby, key=lambda r: (-r.capacity.get(CPU, 0.0), r.name)):
                if self._power_call(
                    rec.name, "on", "the pool's load is above the band", figures_of(now_level), rep
                ):
                    break
            return
        empty = np.flatnonzero(up & (count == 0) & (busy == 0))
        for h in sorted(empty.tolist(), key=lambda i: (cap[0, i], names[i])):
            if names[h] in dests or int(on.sum()) <= cfg.min_hosts:
                continue
            if int((on & (count == 0)).sum()) <= cfg.spare_hosts:
                break  # the spare: an empty host kept on for what comes next
            trial = on.copy()
            trial[h] = False
            lv = level(trial)
            if np.any(lv > cfg.band_high):
                continue
            figures = {**figures_of(lv, "_after"), "hosts_on_after": float(trial.sum())}
            if self._power_call(
                names[h], "off", "empty host: the others carry the load within the band", figures, rep
            ):
                on = trial

    def _booting(self, host: str) -> bool:
        if not supports(self.drivers.driver_of(host), Capability.POWER):
            return False
        try:
            return self.drivers.power(host).power_state(host) == POWER_BOOTING
        except DriverError:
            return False

    def _power_call(
        self, host: str, how: str, rule: str, figures: dict[str, float], rep: RoundReport
    ) -> bool:
        """Power `host` on/off through its driver and record it; False (with the reason noted) when
        its driver cannot or the call failed."""
        d = self.drivers.driver_of(host)
        entry: dict[str, Any] = {"host": host, "action": how, "rule": rule, "figures": figures}
        if not supports(d, Capability.POWER):
            entry["skipped"] = f"driver {getattr(d, 'name', '?')!r} cannot power hosts on and off"
            rep.power.append(entry)
            return False
        try:
            if how == "off":
                self.drivers.power(host).power_off(host)
                self.hosts.mark_state(
                    host, HostState.STANDBY, "host.state", f"powered off by the controller ({rule})"
                )
            else:
                self.drivers.power(host).power_on(host)
        except (DriverError, PoolvisorError) as e:
            entry["skipped"] = e.message
            rep.power.append(entry)
            return False
        word = "powered off" if how == "off" else "powering on"
        self._write(
            lambda s: self._event(
                s,
                f"controller.power_{how}",
                f"host/{host}",
                f"controller: host {host} {word}: {rule}",
                data={"rule": rule, "figures": figures, "alternatives": []},
            )
        )
        rep.power.append(entry)
        return True

    # ---- store reads -----------------------------------------------------------------------------
    def placement_terms(self, keys: list[str]) -> dict[str, _Work]:
        """The demand and placement constraints (labels, group and its policy) the checks hold
        each placed workload of `keys` to (a digital twin seeds its copy of the pool with them)."""
        return self._works(keys)

    def _works(self, keys: list[str]) -> dict[str, _Work]:
        wanted = set(keys)

        def tx(s: Session) -> dict[str, _Work]:
            q = (
                select(
                    ProjectRow.name,
                    WorkloadRow.name,
                    WorkloadRow.demand,
                    WorkloadRow.constraints,
                    GroupRow.name,
                    GroupRow.policy,
                )
                .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                .outerjoin(GroupRow, GroupRow.id == WorkloadRow.group_id)
                .where(WorkloadRow.host_id.is_not(None))
            )
            out = {}
            for p, n, d, c, g, gp in s.execute(q):
                k = f"{p}/{n}"
                if k in wanted:
                    c = c or {}
                    out[k] = _Work(
                        k,
                        p,
                        n,
                        {str(r): float(v) for r, v in d.items()},
                        dict(c.get("required_labels") or {}),
                        dict(c.get("forbidden_labels") or {}),
                        g,
                        GroupPolicy(gp) if gp else None,
                    )
            return out

        return self._read(tx)

    def _history(self, now: float) -> _History:
        """Migrations in flight (workload -> (from, to)) and, within the cool-down, each
        workload's last move time and the hosts it left (from the migrate tasks' journals)."""
        since = now - self.config.limits.cooldown_s

        def tx(s: Session) -> _History:
            h = _History()
            q = select(
                TaskRow.state,
                TaskRow.params,
                TaskRow.journal,
                TaskRow.finished_at,
                TaskRow.created_at,
                TaskRow.workload_id,
            )
            active = q.where(TaskRow.kind == MIGRATE_TASK, TaskRow.state.in_((TASK_QUEUED, TASK_RUNNING)))
            # the recent moves; a controller's move is dated by its round's clock (a simulated one
            # in a digital twin), any other by when it finished
            done = (
                q.where(TaskRow.kind == MIGRATE_TASK, TaskRow.state == TASK_SUCCEEDED)
                .order_by(TaskRow.id.desc())
                .limit(RECENT_MOVES)
            )
            rows = [*s.execute(active).all(), *s.execute(done).all()]
            ids = {r[5] for r in rows if r[5] is not None}
            where: dict[int, str] = {}
            if ids:
                for wid, p, n, hn in s.execute(
                    select(WorkloadRow.id, ProjectRow.name, WorkloadRow.name, HostRow.name)
                    .join(ProjectRow, ProjectRow.id == WorkloadRow.project_id)
                    .outerjoin(HostRow, HostRow.id == WorkloadRow.host_id)
                    .where(WorkloadRow.id.in_(ids))
                ):
                    where[wid] = f"{p}/{n}|{hn or ''}"
            for state, params, journal, fin, created, _wid in rows:
                key = f"{params.get('project')}/{params.get('name')}"
                src = str(journal.get("from") or "")
                dst = str(journal.get("to") or params.get("host") or "")
                if state in (TASK_QUEUED, TASK_RUNNING):
                    if not src and _wid in where:
                        src = where[_wid].split("|", 1)[1]
                    h.inflight[key] = (src, dst)
                    h.last_move[key] = now  # moving now: in its cool-down
                else:
                    when = float(params["at"]) if "at" in params else _epoch(fin or created)
                    if when < since:
                        continue
                    h.last_move[key] = max(h.last_move.get(key, -np.inf), when)
                    if src:
                        h.left.setdefault(key, set()).add(src)
            return h

        return self._read(tx)


def _rule(w: _Work | None) -> tuple[str, str] | None:
    """`w`'s soft group rule for soft.py: (its group's key in the state, the policy), else None."""
    if w is None or w.group is None or w.group_policy not in (GroupPolicy.SOFT_AFFINITY,
                                                              GroupPolicy.SOFT_ANTI_AFFINITY):
        return None
    assert w.group_policy is not None
    return group_key(w.project, w.group), w.group_policy.value


@dataclass
class _History:
    inflight: dict[str, tuple[str, str]] = field(default_factory=dict)
    last_move: dict[str, float] = field(default_factory=dict)
    left: dict[str, set[str]] = field(default_factory=dict)


def _load(st: ClusterState, view: BalancingView) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(load, used, capacity) per host and each workload's own use, all (2, .): measured CPU
    (vCPUs in use) and reserved memory; load = used / capacity."""
    t = st.workloads
    placed = t.host >= 0
    wl = np.vstack([view.request() / LIVE_CPU_SCALE, t.demand[st.resources.index(MEMORY)]])
    used = np.vstack(
        [np.bincount(t.host[placed], wl[0, placed], st.n), np.bincount(t.host[placed], wl[1, placed], st.n)]
    )
    cap = np.vstack([st.raw_capacity[st.resources.index(CPU)], st.raw_capacity[st.resources.index(MEMORY)]])
    return used / np.maximum(cap, 1e-9), used, cap, wl


def _put(s: Session, key: str, value: str) -> None:
    row = s.get(MetaRow, key)
    if row is None:
        s.add(MetaRow(key=key, value=value))
    else:
        row.value = value


def _summary(rep: RoundReport) -> dict[str, Any]:
    d = asdict(rep)
    d["at"] = _iso(rep.at)
    d["held"] = rep.held[:20]
    d["held_count"] = len(rep.held)
    d["contended"] = rep.contended[:MAX_CONTENDED]
    d["contended_count"] = len(rep.contended)
    return d


def _contended(host: str, keys: set[str], got: dict[str, Any]) -> list[dict[str, Any]]:
    """The running workloads of `keys` the host gives less than they ask, with both amounts and
    the largest relative shortfall over their resources (`short`, 0..1)."""
    out = []
    for k, v in sorted(got.items()):
        if k not in keys or v.state != RUNNING or not v.granted:
            continue
        short = max((1.0 - v.granted.get(r, w) / w for r, w in v.wanted.items() if w > 0), default=0.0)
        if short > 1e-9:
            out.append({"workload": k, "host": host, "short": round(short, 6),
                        "granted": {r: round(a, 6) for r, a in v.granted.items()},
                        "wanted": {r: round(a, 6) for r, a in v.wanted.items()}})
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _epoch(t: datetime) -> float:
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()
