"""A pool over time, for the dashboard's charts: allocation per resource and measured vCPU use.

Allocation history is not stored as such; it is rebuilt from the audit log, walking back from the
pool's current allocation (exact) through the newest events: a placement (`workload.placed`, whose
data carries host and demand) added its demand, a release (`workload.deleted`, `.lost`,
`.create_failed`) removed the demand of that workload's placement, a migration moved it between
hosts. The walk stops at the first event whose effect it cannot know (a repair, a rolled-back
batch, a release whose placement is older than the events read), so every point it returns is
exact for the hosts now in the pool (a migration counts when it finished, not when it started).

Measured use is the recorded CPU samples (services/utilization.py) of the workloads now running
in the pool, times their vCPU allocation, summed per time step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poolvisor.services import Services
from poolvisor.services.records import EventRecord, WorkloadRecord

PLACED = "workload.placed"
RELEASES = ("workload.deleted", "workload.lost", "workload.create_failed")
MIGRATED = "workload.migrated"
#: events that change allocations in ways the log does not say
OPAQUE = ("workload.repaired", "workload.batch_failed")
MAX_EVENTS = 1000
MEASURED_STEPS = 288


@dataclass
class AllocationHistory:
    """`times[k]` (epoch s) -> allocated amount per resource from then on (a step function); the
    last point is now. `complete` is False when the walk stopped early, `stopped_by` says why."""

    times: list[float]
    allocated: dict[str, list[float]]
    complete: bool
    stopped_by: str | None = None
    events_used: int = 0


@dataclass
class _Held:
    host: str | None
    demand: dict[str, float] = field(default_factory=dict)
    released: bool = False


def _effects(events_old_first: Sequence[EventRecord]) -> list[tuple[str, dict[str, float] | None] | None]:
    """Per event (oldest first): None (no effect on allocations) or (host-move description, demand).

    A move is encoded as the hosts whose allocation changed: ("+host" | "-host" | "host>host")."""
    held: dict[str, _Held] = {}
    out: list[tuple[str, dict[str, float] | None] | None] = []
    for e in events_old_first:
        d = e.data or {}
        if e.kind == PLACED:
            demand = {str(k): float(v) for k, v in (d.get("demand") or {}).items()}
            held[e.subject] = _Held(str(d.get("host")), demand)
            out.append((f"+{d.get('host')}", demand))
        elif e.kind in RELEASES:
            h = held.get(e.subject)
            if h is None:
                out.append(("?", None))  # placed before the events read: its demand is unknown
            elif h.released:
                out.append(None)  # already released (deleting a lost workload releases nothing)
            else:
                h.released = True
                out.append((f"-{h.host}", h.demand))
        elif e.kind == MIGRATED:
            h = held.get(e.subject)
            src, dst = str(d.get("from")), str(d.get("to"))
            if h is None:
                out.append((f"{src}>{dst}", None))
            else:
                h.host = dst
                out.append((f"{src}>{dst}", h.demand))
        elif e.kind in OPAQUE:
            out.append(("?", None))
        else:
            out.append(None)
    return out


def allocation_history(events_newest_first: Sequence[EventRecord], pool_hosts: set[str],
                       current: dict[str, float], now: float) -> AllocationHistory:
    """Walk back from `current` (the pool's allocation now) through the events; see the module doc."""
    old_first = list(reversed(events_newest_first))
    effects = _effects(old_first)
    cur = {r: float(v) for r, v in current.items()}
    times = [now]
    series: dict[str, list[float]] = {r: [v] for r, v in cur.items()}
    used = 0
    for e, eff in zip(reversed(old_first), reversed(effects), strict=True):
        if eff is None:
            used += 1
            continue
        move, demand = eff
        sign = _sign(move, pool_hosts)
        if sign == 0 and move != "?":
            used += 1
            continue
        if move == "?" or demand is None:
            return _finish(times, series, False, f"{e.kind} of {e.subject} at {e.time:%Y-%m-%d %H:%M:%S}",
                           used)
        # before this event the pool held `cur - sign * demand`
        times.append(e.time.timestamp())
        for r in series:
            series[r].append(cur[r])
        for r, v in demand.items():
            if r in cur:
                cur[r] = max(0.0, cur[r] - sign * v)
        used += 1
    # the start of the window: the value before the oldest event read
    if old_first:
        times.append(old_first[0].time.timestamp())
        for r in series:
            series[r].append(cur[r])
    return _finish(times, series, len(events_newest_first) < MAX_EVENTS,
                   None if len(events_newest_first) < MAX_EVENTS else f"the {MAX_EVENTS} newest events",
                   used)


def _sign(move: str, pool_hosts: set[str]) -> int:
    """+1 when the event added to the pool's allocation, -1 when it removed, 0 when neither."""
    if move.startswith("+"):
        return 1 if move[1:] in pool_hosts else 0
    if move.startswith("-"):
        return -1 if move[1:] in pool_hosts else 0
    if ">" in move:
        src, dst = move.split(">", 1)
        return int(dst in pool_hosts) - int(src in pool_hosts)
    return 0


def _finish(times: list[float], series: dict[str, list[float]], complete: bool, why: str | None,
            used: int) -> AllocationHistory:
    """Oldest first; the step function holds each value until the next point."""
    return AllocationHistory(times[::-1], {r: v[::-1] for r, v in series.items()}, complete, why, used)


def pool_allocation(svc: Services, allocated: dict[str, float], hosts: set[str], now: float
                    ) -> AllocationHistory:
    """The allocation history of the pool made of `hosts`, now holding `allocated`."""
    return allocation_history(svc.events.list_events(None, MAX_EVENTS), hosts, allocated, now)


@dataclass
class MeasuredUse:
    times: list[float]
    vcpu: list[float]  # vCPUs in use per step (recorded samples x allocation)
    measured: int  # running workloads with samples
    running: int


def pool_measured(svc: Services, hosts: set[str], workloads: Sequence[WorkloadRecord],
                  interval_s: float = 300.0, steps: int = MEASURED_STEPS) -> MeasuredUse:
    """vCPUs in use per step on `hosts`, from the samples of the `workloads` running there."""
    running = [w for w in workloads if w.host in hosts and w.state == "running"]
    refs = [(w.project, w.name) for w in running]
    if not refs:
        return MeasuredUse([], [], 0, 0)
    have = svc.utilization.recorded(refs)
    known = [(w, r) for w, r, ok in zip(running, refs, have, strict=True) if ok]
    if not known:
        return MeasuredUse([], [], 0, len(running))
    h = svc.utilization.utilization_history([r for _, r in known], interval_s, steps=steps)
    vcpu = np.array([float(w.demand.get("vcpu", 0.0)) for w, _ in known])
    used = (np.asarray(h.util) * vcpu[:, None]).sum(axis=0)
    start = float(h.start_s or 0.0)
    times = (start + np.arange(used.size) * h.interval_s).tolist()
    return MeasuredUse(times, used.tolist(), len(known), len(running))


def chart(title: str, times: Sequence[float], series: Mapping[str, Sequence[float]], *, unit: str = "",
          stepped: bool = False, ymax: float | None = None) -> dict[str, Any]:
    """The JSON a page embeds for app.js to draw with uPlot (x in epoch seconds)."""
    return {"title": title, "x": list(times),
            "series": [{"label": k, "values": list(v)} for k, v in series.items()],
            "unit": unit, "stepped": stepped, "ymax": ymax}
