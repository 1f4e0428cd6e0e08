"""The digital twin: the live pool's recorded window replayed through the controller loop itself.

`run_twin(live, pool, policy, hours)`:

1. **What happened** (`outcome.recorded_timeline`): the window's placements, host states,
   migrations and CPU use, read from the live store's events and utilization samples;
2. **the twin**: a throwaway store (SQLite in a temporary directory) seeded with the pool as it
   was at the window's start (its hosts, their states, its workloads on their hosts of that time,
   with their constraints and groups; the hour of samples before the window, so history-based
   detectors have a past), a sim driver whose every workload replays its recorded CPU use
   (`SimDriver.set_profile`) and whose hosts boot in `boot_s` seconds, all on a `SimClock`
   starting at the window's start. On that clock run the very loop `poolvisor serve` runs:
   `ControllerLoop` -> `ControllerService.reconcile` -> `plan_balancing` (the one planner), the
   limits and the power management, with the policy asked for; the migrate tasks it queues run
   on the same clock (the task executor's `claim_tasks`/`run_task`). Workloads created inside the
   window are created in the twin at their recorded time (the twin's placement places them);
3. the twin is observed at every step of the grid (its workloads' hosts, its hosts' states, the
   `workload.migrated` events of its store) into a Timeline, and both Timelines are scored by
   `outcome.outcome`: one definition of every figure on both sides.

Nothing is written to the live store. It lives with the simulator, outside services/, and uses
only the public services.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.clock import Loop, Phase, SimClock
from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.domain.models import HostState
from poolvisor.drivers.sim import SimDriver
from poolvisor.services.controller import ControllerConfig
from poolvisor.services.controller_loop import ControllerLoop
from poolvisor.services.events import EventFilter
from poolvisor.sim.outcome import OFF_STATES, Timeline, outcome, recorded_timeline

MAX_HOURS = 24.0 * 14
PRIOR_STEPS = 12  # recorded steps before the window copied into the twin (the detectors' past)
DEFAULT_BOOT_S = 60.0
SAMPLE_CHUNK = 50_000
Progress = Callable[[float], None]


@dataclass
class TwinResult:
    """Both sides of the window, scored alike (outcome.outcome)."""

    policy: str
    pool: str | None
    start_s: float
    interval_s: float
    steps: int
    round_s: float
    actual: dict[str, Any]
    twin: dict[str, Any]
    rounds: int
    vms: int
    hosts: int
    without_history: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "pool": self.pool, "start_s": self.start_s,
                "interval_s": self.interval_s, "steps": self.steps, "round_s": self.round_s,
                "rounds": self.rounds, "vms": self.vms, "hosts": self.hosts,
                "actual": self.actual, "twin": self.twin,
                "without_history": {"count": len(self.without_history), "vms": self.without_history},
                "notes": self.notes}


def policy_name(policy: str, param: float | None) -> str:
    """`--policy thr-mmt --param 0.8` -> 'thr-mmt-0.8' (the controller's policy names carry it)."""
    p = policy.strip()
    if param is None:
        return p
    if not math.isfinite(param):
        raise InvalidInputError("--param must be a finite number")
    return f"{p}-{param:g}"


def run_twin(live: Any, pool: str | None, policy: str, hours: float, *, param: float | None = None,
             interval_s: float = 300.0, round_s: float | None = None, boot_s: float = DEFAULT_BOOT_S,
             end_s: float | None = None, config: ControllerConfig | None = None,
             progress: Progress | None = None) -> TwinResult:
    """Replay the last `hours` (ending at `end_s`, default now) of `pool` through the controller
    loop with `policy` (module doc) and score it against what the live store recorded."""
    if not (isinstance(hours, (int, float)) and 0 < hours <= MAX_HOURS):
        raise InvalidInputError(f"hours must be in (0, {MAX_HOURS:g}]")
    if not 1 <= interval_s <= 86400:
        raise InvalidInputError("interval: give 1..86400 seconds")
    round_s = float(round_s if round_s is not None else interval_s)
    if not 1 <= round_s <= 86400:
        raise InvalidInputError("round: give 1..86400 seconds")
    if not boot_s >= 0:
        raise InvalidInputError("boot time must be >= 0 s")
    name = policy_name(policy, param)
    base = config or ControllerConfig()
    cfg = ControllerConfig(**{**base.__dict__, "policy": name})  # 422 for an unknown policy, now
    end = time.time() if end_s is None else float(end_s)
    if pool is not None:
        live.catalog.get_pool(pool)  # 404 for an unknown pool
    actual = recorded_timeline(live, pool, end - hours * 3600.0, end, interval_s)
    if not actual.vms:
        raise InvalidInputError(f"no workload ran on {'pool ' + repr(pool) if pool else 'any host'} "
                                "in the window: nothing to replay")
    with tempfile.TemporaryDirectory(prefix="poolvisor-twin-") as d:
        tl, rounds, notes = _replay(live, pool, actual, cfg, round_s, boot_s, Path(d), progress)
    return TwinResult(name, pool, actual.start_s, interval_s, actual.steps, round_s,
                      outcome(actual, cfg.bandwidth_mibps), outcome(tl, cfg.bandwidth_mibps), rounds,
                      len(actual.vms), len(actual.hosts), actual.without_history, notes)


def _replay(live: Any, pool: str | None, actual: Timeline, cfg: ControllerConfig, round_s: float,
            boot_s: float, where: Path, progress: Progress | None) -> tuple[Timeline, int, list[str]]:
    from poolvisor.services import open_services

    clock = SimClock(actual.start_s)
    tw = open_services(f"sqlite:///{where / 'twin.db'}", repair=False,
                       driver_options={"clock": lambda: clock.now, "boot_s": boot_s})
    try:
        tw.controller.config = cfg
        notes = _seed(live, tw, pool, actual)
        loop = ControllerLoop(tw, round_s, clock=clock)
        loop.start(at=actual.start_s)
        tasks = Loop(clock, lambda _t: _run_tasks(tw), round_s, priority=Phase.ACT + 1, name="twin-tasks")
        tasks.start(at=actual.start_s)
        seen = _Observer(tw, actual, progress)
        Loop(clock, seen.step, actual.interval_s, priority=Phase.RECORD, name="twin-observe").start(
            at=actual.start_s)
        for v, k in _arrivals(actual):  # created inside the window: at their recorded time
            clock.schedule(_creator(tw, pool, live, actual.vms[v], notes),
                           at=actual.start_s + k * actual.interval_s, priority=Phase.MEASURE - 1)
        clock.run(until=actual.start_s + (actual.steps - 1) * actual.interval_s)
        errs = loop.status().errors
        if errs:
            notes.append(f"{errs} controller round(s) failed in the twin: {loop.status().last_error}")
        return seen.timeline(), loop.rounds, notes
    finally:
        tw.close()


def _creator(tw: Any, pool: str | None, live: Any, key: str, notes: list[str]) -> Callable[[Any], None]:
    return lambda _arg: _create(tw, pool, live, key, notes)


def _run_tasks(tw: Any) -> None:
    """The task executor's work at this instant: every queued task (the controller's moves)."""
    while True:
        ids = tw.tasks.claim_tasks(100)
        if not ids:
            return
        for tid in ids:
            tw.tasks.run_task(tid)


def _arrivals(tl: Timeline) -> list[tuple[int, int]]:
    """(workload, step) of the workloads that were not running at the start but later were."""
    out = []
    for v in range(len(tl.vms)):
        row = tl.host_of[v]
        if row[0] < 0 and (row >= 0).any():
            out.append((v, int(np.flatnonzero(row >= 0)[0])))
    return out


def _seed(live: Any, tw: Any, pool: str | None, tl: Timeline) -> list[str]:
    """The twin's store: the pool at the window's start (module doc)."""
    notes: list[str] = []
    hosts = {h.name: h for h in live.hosts.list_hosts(pool)}
    for p in sorted({h.pool for h in hosts.values() if h.pool is not None}):
        tw.catalog.create_pool(p)
    for name in tl.hosts:
        h = hosts[name]
        tw.hosts.create_host(name, dict(h.capacity), pool=h.pool, overcommit=dict(h.overcommit) or None,
                             labels=dict(h.labels) or None, domain=h.domain, max_workloads=h.max_workloads)
    for p in sorted({v.split("/", 1)[0] for v in tl.vms}):
        tw.catalog.create_project(p)
    drv = tw.drivers.default
    assert isinstance(drv, SimDriver)
    for i, key in enumerate(tl.vms):
        drv.set_profile(key, np.clip(tl.util[i], 0.0, 1.0).tolist(), tl.interval_s, tl.start_s)
    order = sorted(range(len(tl.vms)), key=lambda v: (int(tl.host_of[v, 0]), tl.vms[v]))
    groups: set[str] = set()
    for v in order:
        h = int(tl.host_of[v, 0])
        if h >= 0:
            _create(tw, pool, live, tl.vms[v], notes, tl.hosts[h], groups)
    for h, name in enumerate(tl.hosts):
        if tl.on[h, 0] or (tl.host_of[:, 0] == h).any():
            continue
        state = tl.start_states.get(name, "standby")
        if state not in ("down", "fenced"):  # standby (or a record that says nothing else)
            tw.drivers.power(name).power_off(name)
            tw.hosts.mark_state(name, HostState.STANDBY, "host.state",
                                "switched off (as at the window's start)")
        else:
            drv.fail(name)
            tw.hosts.mark_state(name, HostState.DOWN, "host.state", f"{state} (as at the window's start)")
    _copy_prior(live, tw, tl)
    return notes


def _create(tw: Any, pool: str | None, live: Any, key: str, notes: list[str], host: str | None = None,
            groups: set[str] | None = None) -> None:
    """Create `key` in the twin as in the live pool: same demand, priority, constraints and group;
    on `host` when given (the window's start), else where the twin's placement puts it."""
    project, name = key.split("/", 1)
    w = live.workloads.get_workload(project, name)
    terms = live.controller.placement_terms([key]).get(key)
    groups = groups if groups is not None else set()
    gkey = f"{project}/{w.group}" if w.group else None
    kw: dict[str, Any] = {
        "demand": dict(w.demand), "kind": w.kind, "priority": w.priority, "group": w.group,
        "group_policy": (terms.group_policy.value if terms and terms.group_policy and gkey not in groups
                         else None),
        "required_labels": dict(terms.required) if terms else None,
        "forbidden_labels": dict(terms.forbidden) if terms else None,
        "pool": pool if pool is not None else (live.hosts.get_host(w.host).pool if w.host else None),
    }
    try:
        tw.workloads.create_workload(project, name, host=host, **kw)
    except PoolvisorError as e:
        if host is None:
            notes.append(f"{key} could not be created in the twin: {e.message}")
            return
        try:  # it no longer fits where it ran (the live pool overcommitted it): placement decides
            tw.workloads.create_workload(project, name, **kw)
            notes.append(f"{key} did not fit on {host} in the twin ({e.message}); placed elsewhere")
        except PoolvisorError as e2:
            notes.append(f"{key} could not be created in the twin: {e2.message}")
            return
    if gkey is not None:
        groups.add(gkey)


def _copy_prior(live: Any, tw: Any, tl: Timeline) -> None:
    """The recorded steps just before the window, into the twin's history (the detectors' past)."""
    before = tl.start_s - tl.interval_s
    there = [tl.vms[v] for v in range(len(tl.vms)) if tl.host_of[v, 0] >= 0]  # created in the twin
    known = [v for v, ok in zip(there, live.utilization.recorded(there, until=before), strict=True) if ok]
    if not known:
        return
    h = live.utilization.utilization_history(known, tl.interval_s, steps=PRIOR_STEPS, until=before)
    times = (h.start_s or 0.0) + tl.interval_s * np.arange(h.util.shape[1])
    samples = [(v, float(t), float(u)) for i, v in enumerate(known)
               for t, u in zip(times.tolist(), h.util[i].tolist(), strict=True)]
    for i in range(0, len(samples), SAMPLE_CHUNK):
        tw.utilization.record_utilization(samples[i:i + SAMPLE_CHUNK])


class _Observer:
    """The twin's store read at every step of the grid, into a Timeline (module doc, step 3)."""

    def __init__(self, tw: Any, like: Timeline, progress: Progress | None) -> None:
        self.tw, self.like, self.progress = tw, like, progress
        V, H, T = len(like.vms), len(like.hosts), like.steps
        self.host_of = np.full((V, T), -1, dtype=np.int64)
        self.on = np.zeros((H, T), dtype=bool)
        self.migrations: list[tuple[int, int, str, str]] = []
        self.k = 0
        self.after = tw.events.last_event_id()
        self.vidx = {v: i for i, v in enumerate(like.vms)}
        self.hidx = {h: i for i, h in enumerate(like.hosts)}

    def step(self, _t: float) -> None:
        k = self.k
        if k >= self.like.steps:
            return
        for w in self.tw.workloads.list_workloads():
            v = self.vidx.get(f"{w.project}/{w.name}")
            if v is not None and w.host is not None and w.state in ("running", "migrating"):
                self.host_of[v, k] = self.hidx.get(w.host, -1)
        for h in self.tw.hosts.list_hosts():
            if h.name in self.hidx:
                self.on[self.hidx[h.name], k] = h.state not in OFF_STATES
        flt = EventFilter(kind="workload.migrated")
        while True:
            page = self.tw.events.events_after(self.after, flt)
            for e in page:
                v = self.vidx.get(e.subject.removeprefix("workload/"))
                if v is not None:
                    self.migrations.append((k, v, str(e.data.get("from")), str(e.data.get("to"))))
            if not page:
                break
            self.after = page[-1].id
        self.k += 1
        if self.progress is not None:
            self.progress(self.k / self.like.steps)

    def timeline(self) -> Timeline:
        t = self.like
        return Timeline(t.start_s, t.interval_s, t.hosts, t.host_cpu, t.vms, t.vm_cpu, t.vm_memory_mib,
                        t.util, self.host_of, self.on, self.migrations, t.without_history, t.start_states)
