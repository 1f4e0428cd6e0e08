"""What happened in a pool over a window, and its figures (energy, SLA, migrations, hosts on).

A `Timeline` is the pool on a grid of steps: each workload's host and CPU use, each host on or off,
and the migrations. `recorded_timeline` builds it from what the live store RECORDED (nothing is
simulated): the utilization samples (`svc.utilization`), and the events that changed a placement
(`workload.created/placed/migrated/lost/restarted/deleted`) or a host's state (`host.*` events
carrying `from`/`to`), walked back from the present to the window's start. The digital twin
(sim/twin.py) builds its Timeline by observing its own store step by step; both are scored by the
one `outcome` function, so the comparison uses one definition of every figure.

Figures (the PlanetLab simulator's definitions, on the live pool's units: CPU in vCPUs):
energy (kWh) of the hosts on, by the live power model (view.LIVE_POWER, linear 100-250 W);
SLATAH: per host, the share of its active steps (on, with a workload) at 100 % CPU, averaged over
the hosts ever active; PDM: per workload, 10 % of its CPU during each migration (memory over the
migration bandwidth) over the CPU it used in the window, averaged; SLAV = SLATAH x PDM; ESV =
energy x SLAV; migrations; hosts on (mean and peak).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from poolvisor.policies.balancing.view import LIVE_POWER
from poolvisor.services.events import EventFilter
from poolvisor.services.utilization import UtilizationHistory

#: host states in which a host draws power (standby: switched off by the controller; down/fenced: dead)
OFF_STATES = frozenset({"standby", "down", "fenced"})
#: the share of a workload's CPU lost while it migrates (Beloglazov & Buyya's PDM)
MIGRATION_DEGRADATION = 0.1
DEFAULT_BANDWIDTH_MIBPS = 1250.0  # the controller's default migration speed (ControllerConfig)
NO_HISTORY_UTIL = 1.0  # a workload without any sample: its whole vCPU reservation (as whatif.py)
PAGE = 1000


@dataclass
class Timeline:
    """The pool on `steps` steps of `interval_s` from `start_s` (epoch seconds).

    `host_of[v, k]`: index into `hosts` of workload v's host at step k, -1 when it is not running
    there (not created yet, lost, deleted); `on[h, k]`: host h draws power; `util[v, k]`: the share
    of v's vCPUs in use; `migrations`: (step, workload index, from, to) host names."""

    start_s: float
    interval_s: float
    hosts: tuple[str, ...]
    host_cpu: np.ndarray  # (H,) vCPUs
    vms: tuple[str, ...]
    vm_cpu: np.ndarray  # (V,) vCPUs
    vm_memory_mib: np.ndarray  # (V,)
    util: np.ndarray  # (V, T)
    host_of: np.ndarray  # (V, T) int
    on: np.ndarray  # (H, T) bool
    migrations: list[tuple[int, int, str, str]] = field(default_factory=list)
    without_history: list[str] = field(default_factory=list)
    start_states: dict[str, str] = field(default_factory=dict)  # each host's state at the start

    @property
    def steps(self) -> int:
        return int(self.util.shape[1])

    def step_of(self, t: float) -> int:
        """The step holding epoch time `t`, clamped to the grid."""
        return min(self.steps - 1, max(0, math.floor((t - self.start_s) / self.interval_s)))


def outcome(tl: Timeline, bandwidth_mibps: float = DEFAULT_BANDWIDTH_MIBPS) -> dict[str, Any]:
    """The window's figures (module doc) from a Timeline: the one scoring of both sides."""
    H, T = len(tl.hosts), tl.steps
    placed = tl.host_of >= 0
    use = tl.util * tl.vm_cpu[:, None]  # (V, T) vCPUs in use
    demand = np.zeros((H, T))
    count = np.zeros((H, T))
    v_idx, k_idx = np.nonzero(placed)
    np.add.at(demand, (tl.host_of[v_idx, k_idx], k_idx), use[v_idx, k_idx])
    np.add.at(count, (tl.host_of[v_idx, k_idx], k_idx), 1)
    u = demand / np.maximum(tl.host_cpu[:, None], 1e-9)
    on = tl.on | (count > 0)  # a host running a workload draws power, whatever its record says
    watts = LIVE_POWER.power(np.zeros(u.shape, dtype=np.intp), np.clip(u, 0.0, 1.0)) * on
    energy_kwh = float(watts.sum() * tl.interval_s / 3.6e6)
    active = on & (count > 0)
    over = active & (u >= 1.0 - 1e-9)
    act_steps = active.sum(axis=1)
    ever = act_steps > 0
    slatah = float((over.sum(axis=1)[ever] / act_steps[ever]).mean()) if ever.any() else 0.0
    lost = np.zeros(len(tl.vms))
    for k, v, _src, _dst in tl.migrations:
        secs = tl.vm_memory_mib[v] / bandwidth_mibps
        lost[v] += MIGRATION_DEGRADATION * use[v, k] * secs
    requested = (use * placed).sum(axis=1) * tl.interval_s
    has = requested > 0
    pdm = float((lost[has] / requested[has]).mean()) if has.any() else 0.0
    slav = slatah * pdm
    hosts_on = on.sum(axis=0)
    return {
        "energy_kwh": round(energy_kwh, 4),
        "slatah": slatah,
        "pdm": pdm,
        "slav": slav,
        "esv": energy_kwh * slav,
        "migrations": len(tl.migrations),
        "hosts_on_mean": round(float(hosts_on.mean()), 3) if T else 0.0,
        "hosts_on_max": int(hosts_on.max(initial=0)),
        "overloaded_host_hours": round(float(over.sum() * tl.interval_s / 3600), 3),
    }


# ---- what the live store recorded ------------------------------------------------------------------
def _epoch(t: datetime) -> float:
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def events_since(svc: Any, kind: str, since_s: float) -> list[Any]:
    """Every event of `kind` (and its sub-kinds) from `since_s` on, oldest first (paged reads)."""
    flt = EventFilter(kind=kind, since=datetime.fromtimestamp(since_s, UTC))
    out: list[Any] = []
    after = 0
    while True:
        page = svc.events.events_after(after, flt, PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = page[-1].id


#: placement events: kind -> (the workload's host before it, after it) read from the event's data
def _placement_change(kind: str, data: dict[str, Any]) -> tuple[str | None, str | None] | None:
    host = data.get("host")
    if kind == "workload.migrated":
        return data.get("from"), data.get("to")
    if kind in ("workload.created", "workload.placed"):
        return None, host
    if kind == "workload.restarted":
        return None, host
    if kind in ("workload.lost", "workload.deleted"):
        return host, None
    return None


class _Changes:
    """One subject's dated changes (time, before, after), to read its value at any time."""

    def __init__(self, now: Any) -> None:
        self.now = now
        self.changes: list[tuple[float, Any, Any]] = []

    def at(self, t: float) -> Any:
        """The value at time `t`: after the last change at or before `t`, else before the first
        change after it, else (no change since) the present value."""
        last = None
        for when, before, after in self.changes:
            if when <= t:
                last = after
            else:
                return before if last is None else last
        return self.now if last is None else last


def _backfilled(svc: Any, place: dict[str, _Changes]) -> None:
    """A workload whose samples go back before its creation event (a history recorded elsewhere
    and loaded with it, as `serve --demo` seeds one) ran since its first sample: its creation is
    then no arrival, it is on its first host from the start."""
    for key, ch in place.items():
        if not ch.changes or ch.changes[0][1] is not None or ch.changes[0][2] is None:
            continue
        when = ch.changes[0][0]
        if svc.utilization.recorded([key], until=when - 1.0)[0]:
            ch.changes[0] = (when, ch.changes[0][2], ch.changes[0][2])


def window_grid(start_s: float, end_s: float, interval_s: float) -> tuple[float, int]:
    """The grid of `interval_s` buckets (aligned on multiples of it, as the history reader) that
    covers [start_s, end_s]: its first bucket's time and its number of steps."""
    b0 = math.floor(start_s / interval_s)
    return b0 * interval_s, math.floor(end_s / interval_s) - b0 + 1


def recorded_history(svc: Any, vms: Sequence[str], start_s: float, steps: int, interval_s: float
                     ) -> tuple[np.ndarray, list[str]]:
    """(V, steps) recorded CPU use from the store's samples on the window's grid. A workload whose
    samples begin inside the window keeps its first value before them; one with none at all
    replays at NO_HISTORY_UTIL (returned by name)."""
    util = np.full((len(vms), steps), NO_HISTORY_UTIL)
    until = start_s + (steps - 1) * interval_s
    if not vms:
        return util, []
    by_start = svc.utilization.recorded(list(vms), until=start_s)
    any_ = svc.utilization.recorded(list(vms), until=until)
    early = [v for v, ok in zip(vms, by_start, strict=True) if ok]
    row = {v: i for i, v in enumerate(vms)}
    if early:
        h = svc.utilization.utilization_history(early, interval_s, steps=steps, until=until)
        util[[row[v] for v in early]] = h.util
    missing = []
    for v, ok0, ok in zip(vms, by_start, any_, strict=True):
        if ok0:
            continue
        if not ok:
            missing.append(v)
            continue
        h = svc.utilization.utilization_history([v], interval_s, until=until)  # from its first sample
        n = min(h.util.shape[1], steps)
        util[row[v], steps - n:] = h.util[0, -n:]
        util[row[v], :steps - n] = h.util[0, -n]
    return util, missing


def recorded_timeline(svc: Any, pool: str | None, start_s: float, end_s: float,
                      interval_s: float = 300.0) -> Timeline:
    """What happened in `pool` (every host when None) over [start_s, end_s], from the store's
    records only (module doc): the present placement and host states, walked back through the
    events since `start_s`, and the recorded utilization."""
    t0, steps = window_grid(start_s, end_s, interval_s)
    hosts = svc.hosts.list_hosts(pool)
    names = tuple(h.name for h in hosts)
    hidx = {n: i for i, n in enumerate(names)}
    # placements: workloads that are on one of these hosts now, or were during the window
    moves = events_since(svc, "workload", t0)
    wls = {f"{w.project}/{w.name}": w for w in svc.workloads.list_workloads()}
    place: dict[str, _Changes] = {}
    for key, w in wls.items():
        if w.host in hidx:
            place[key] = _Changes(w.host)
    dated: list[tuple[float, str, str | None, str | None]] = []
    for e in moves:
        ch = _placement_change(e.kind, e.data)
        key = e.subject.removeprefix("workload/")
        if ch is None or key not in wls:
            continue  # a workload gone since (deleted): its rows and samples are gone too
        dated.append((_epoch(e.time), key, *ch))
        if key not in place and (ch[0] in hidx or ch[1] in hidx):
            w = wls[key]
            place[key] = _Changes(w.host)
    for when, key, before, after in dated:
        if key in place:
            place[key].changes.append((when, before, after))
    _backfilled(svc, place)
    vms = tuple(sorted(place))
    times = t0 + interval_s * np.arange(steps)
    host_of = np.full((len(vms), steps), -1, dtype=np.int64)
    for i, key in enumerate(vms):
        for k, t in enumerate(times.tolist()):
            h = place[key].at(t + interval_s / 2)  # where it ran in the middle of the step
            host_of[i, k] = hidx.get(h, -1) if h is not None else -1
    migrations = []
    vidx = {v: i for i, v in enumerate(vms)}
    for when, key, before, after in dated:
        if before is not None and after is not None and key in vidx and t0 <= when <= end_s \
                and (before in hidx or after in hidx):
            migrations.append((min(steps - 1, int((when - t0) // interval_s)), vidx[key], before, after))
    # host states
    state = {h.name: _Changes(h.state) for h in hosts}
    for e in events_since(svc, "host", t0):
        name = e.subject.removeprefix("host/")
        if name in state and "from" in e.data and "to" in e.data:
            state[name].changes.append((_epoch(e.time), e.data["from"], e.data["to"]))
    mid = (times + interval_s / 2).tolist()
    on = np.array([[state[n].at(t) not in OFF_STATES for t in mid] for n in names],
                  dtype=bool).reshape(len(names), steps)
    util, missing = recorded_history(svc, vms, t0, steps, interval_s)
    return Timeline(
        start_s=t0, interval_s=interval_s, hosts=names,
        host_cpu=np.array([float(h.capacity.get("vcpu", 0.0)) for h in hosts]),
        vms=vms,
        vm_cpu=np.array([float(wls[v].demand.get("vcpu", 0.0)) for v in vms]),
        vm_memory_mib=np.array([float(wls[v].demand.get("memory_mib", 0.0)) for v in vms]),
        util=util, host_of=host_of, on=on, migrations=migrations, without_history=missing,
        start_states={n: str(state[n].at(t0)) for n in names},
    )


def history_of(tl: Timeline) -> UtilizationHistory:
    """The timeline's utilization as the what-if history type (a twin's driver profiles replay it)."""
    return UtilizationHistory(tl.util, tl.interval_s, tl.start_s)
