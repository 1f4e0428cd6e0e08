"""Online replay: arrivals and departures (and host up/down changes) as events on the clock core.

Events run on a :class:`~poolvisor.clock.SimClock`, ordered by ``(time, priority, seq)``: at
equal times departures come first (freeing room), then host removals and additions, then
arrivals, then metric samples; ``seq`` keeps the trace order among equals. Each arrival is placed
by the policy or rejected (with a reason); a departure releases exactly what was allocated.
Arrivals are fed into the queue one at a time, so it only holds running jobs' departures plus a
few pending events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poolvisor.clock import SimClock
from poolvisor.sim.online.fleet import Fleet, Job
from poolvisor.sim.online.fragmentation import FragModel
from poolvisor.sim.online.policies import Context, OnlinePolicy
from poolvisor.sim.online.queue import SimQueue
from poolvisor.traces.workload import Workload

#: same-instant priorities (lower first): the queue (SERVE) is served once per instant, after the
#: room of that instant's departures and host additions, before its new arrivals
DEPART, HOST_DOWN, HOST_UP, SERVE, ARRIVE, SAMPLE = range(6)


@dataclass(frozen=True)
class HostEvents:
    """Availability changes: at ``time[i]`` host ``host[i]`` goes up (True) or down (False)."""

    time: np.ndarray
    host: np.ndarray
    up: np.ndarray


class FragTracker:
    """F_n per host, recomputed lazily for the hosts whose state changed since the last read."""

    def __init__(self, model: FragModel | None, fleet: Fleet) -> None:
        self.model = model
        self.fleet = fleet
        self.values = np.zeros(fleet.n)
        self.dirty = np.ones(fleet.n, dtype=bool)

    def touch(self, h: int) -> None:
        self.dirty[h] = True

    def current(self) -> np.ndarray:
        if self.model is not None and self.dirty.any():
            idx = np.flatnonzero(self.dirty)
            self.values[idx] = self.model.host_frag(self.fleet, idx)
            self.dirty[:] = False
        return self.values


@dataclass
class OnlineResult:
    """Counts, rejection reasons and sampled time series of one replay under one policy."""

    policy: str
    trace: str
    resources: tuple[str, ...]
    jobs: int
    accepted: int
    rejected: int
    evicted: int
    reasons: dict[str, int]
    wall_s: float
    time_unit: str
    time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    active_hosts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    up_hosts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    alloc_frac: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (S, R)
    frag: np.ndarray = field(default_factory=lambda: np.zeros(0))  # fraction of primary capacity
    frag_of_free: np.ndarray = field(default_factory=lambda: np.zeros(0))  # fraction of free primary
    primary: str = ""
    first_rejection: float = float("nan")  # time (or arrived load) of the first rejected arrival
    queue: dict[str, Any] | None = None  # with a queue discipline: wait times (sim/online/queue.py)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.jobs if self.jobs else 1.0

    def metrics(self) -> dict[str, Any]:
        def mean(a: np.ndarray) -> float:
            return float(np.mean(a)) if a.size else float("nan")

        def peak(a: np.ndarray) -> float:
            return float(np.max(a)) if a.size else float("nan")

        out: dict[str, Any] = {
            "policy": self.policy,
            "trace": self.trace,
            "jobs": self.jobs,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "acceptance": self.acceptance,
            "first_rejection": self.first_rejection,
            "evicted": self.evicted,
            "rejected_by_reason": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])),
            "hosts_active_mean": mean(self.active_hosts),
            "hosts_active_peak": int(peak(self.active_hosts)) if self.active_hosts.size else 0,
            "hosts_up_mean": mean(self.up_hosts),
        }
        for r, name in enumerate(self.resources):
            col = self.alloc_frac[:, r] if self.alloc_frac.size else np.zeros(0)
            out[f"alloc_{name}_mean"] = mean(col)
            out[f"alloc_{name}_end"] = float(col[-1]) if col.size else float("nan")
        out["frag_primary"] = self.primary
        out["frag_mean"] = mean(self.frag)
        out["frag_end"] = float(self.frag[-1]) if self.frag.size else float("nan")
        out["frag_of_free_mean"] = mean(self.frag_of_free[np.isfinite(self.frag_of_free)])
        out["wall_s"] = self.wall_s
        if self.queue is not None:
            out["queue"] = self.queue
        return out

    def to_dict(self, series: bool = False) -> dict[str, Any]:
        """JSON-safe: NaN (e.g. no rejection yet) becomes None."""
        d = {k: (None if isinstance(v, float) and v != v else v) for k, v in self.metrics().items()}
        if self.queue is not None:
            d["queue"] = self.queue
        if series:
            d["series"] = {
                "time": self.time.tolist(),
                "time_unit": self.time_unit,
                "active_hosts": self.active_hosts.tolist(),
                "up_hosts": self.up_hosts.tolist(),
                "frag": self.frag.tolist(),
                "alloc_frac": {n: self.alloc_frac[:, i].tolist() for i, n in enumerate(self.resources)},
            }
        return d


def replay(
    fleet: Fleet,
    workload: Workload,
    policy: OnlinePolicy,
    model: FragModel | None = None,
    *,
    host_events: HostEvents | None = None,
    samples: int = 300,
    horizon: float | None = None,
    time_unit: str = "s",
    check: bool = False,
    progress: Callable[[int], None] | None = None,
    clock: SimClock | None = None,
    queue: str | None = None,
    weights: np.ndarray | None = None,
) -> OnlineResult:
    """Replay ``workload`` on ``fleet`` (mutated) with ``policy``; returns counts and time series.

    ``check`` verifies capacity and bookkeeping invariants after every event (tests).
    ``progress(k)`` is called with the number of arrivals handled since the previous call.
    ``clock``: the simulated clock to run on (default: a fresh one; a tracing clock records the
    order of the events), not later than the first event.
    ``queue``: a queue discipline (policies/queueing.py): an arrival that does not fit waits and is
    served in that order when room frees (sim/online/queue.py) instead of being rejected; without
    a ``horizon`` the replay then runs past the last arrival until nobody waits (or nothing is
    left to depart). ``weights`` (P,): the projects' fair-share weights for ``drf`` (1 each by
    default), as the live queue reads them from its projects.
    """
    t0 = time.perf_counter()
    n = len(workload)
    arr, dep, dem = workload.arrival, workload.departure, workload.demand
    cnt, milli = workload.gpu_count, workload.gpu_milli
    tracker = FragTracker(model, fleet)
    ctx = Context(fleet, model)
    job_host = np.full(n, -1, dtype=np.int64)
    job_devs: dict[int, np.ndarray] = {}
    running = np.zeros(n, dtype=bool)
    reasons: dict[str, int] = {}
    accepted = evicted = 0
    first_rejection = float("nan")
    start = float(arr[0]) if n else 0.0
    end = float(horizon) if horizon is not None else (float(arr[-1]) if n else 0.0)
    sample_t = np.linspace(start, end, max(samples, 2)) if end > start else np.array([start])
    if clock is None:
        first = start
        if host_events is not None and host_events.time.size:
            first = min(first, float(host_events.time.min()))
        clock = SimClock(start=first)
    post = clock.post
    q = SimQueue(queue, workload, fleet, weights) if queue is not None else None

    s_active: list[int] = []
    s_up: list[int] = []
    s_alloc: list[np.ndarray] = []
    s_frag: list[float] = []
    s_free: list[float] = []
    s_time: list[float] = []
    pending_progress = 0
    st = fleet.state

    def job(i: int) -> Job:
        return Job(i, dem[i], int(cnt[i]), int(milli[i]))

    def place(i: int) -> int:
        """Place job i by the policy if some host fits it now (its host, else -1); it leaves after
        its run time."""
        nonlocal accepted
        j = job(i)
        cand = fleet.feasible(j)
        if cand.size == 0:
            return -1
        h, devs = policy.choose(ctx, j, cand)
        used = fleet.allocate(h, j, devs)
        tracker.touch(h)
        job_host[i] = h
        if used.size:
            job_devs[i] = used
        running[i] = True
        accepted += 1
        if q is not None:
            q.started(i)
        if np.isfinite(dep[i]):
            late = clock.now - float(arr[i])  # > 0 when it waited in the queue
            post(float(dep[i]) + late if late > 0 else float(dep[i]), DEPART, depart, i)
        return int(h)

    serve_at = [float("nan")]  # the instant a SERVE event is posted for (one per instant)

    def touch(h: int) -> None:
        assert q is not None
        q.touch(h)
        if serve_at[0] != clock.now:
            serve_at[0] = clock.now
            post(clock.now, SERVE, serve, 0)

    def serve(_: int) -> None:
        assert q is not None
        q.serve(clock.now, place)
        if clock.now > end and not q.pending:
            clock.stop()  # past the last arrival with nobody waiting: the rest changes nothing
        if check:
            fleet.check_invariants()

    def arrive(i: int) -> None:
        nonlocal first_rejection, pending_progress
        if i + 1 < n:
            post(float(arr[i + 1]), ARRIVE, arrive, i + 1)
        if place(i) < 0:
            j = job(i)
            if q is not None and not q.never_fits(j.demand, j.count, j.milli):
                q.add(i, clock.now)  # waits for room (counted at the end if never served)
            else:
                if not reasons:
                    first_rejection = clock.now
                r = fleet.rejection_reason(j) if q is None else "larger than any host"
                reasons[r] = reasons.get(r, 0) + 1
        pending_progress += 1
        if progress is not None and pending_progress >= 1024:
            progress(pending_progress)
            pending_progress = 0
        if check:  # capacity and device books after every event
            fleet.check_invariants()

    def depart(i: int) -> None:
        if running[i]:
            h = int(job_host[i])
            fleet.release(h, job(i), job_devs.pop(i, np.zeros(0, dtype=np.int64)))
            tracker.touch(h)
            running[i] = False
            if q is not None:
                q.stopped(i)
                if clock.now > end and not q.pending:
                    clock.stop()  # past the last arrival with nobody waiting
                    return
                touch(h)
        if check:
            fleet.check_invariants()

    def host_change(ev: tuple[int, bool]) -> None:
        nonlocal evicted
        i, up_now = ev
        if not up_now and fleet.up[i]:
            for k in np.flatnonzero(running & (job_host == i)).tolist():
                fleet.release(i, job(k), job_devs.pop(k, np.zeros(0, dtype=np.int64)))
                running[k] = False
                evicted += 1
                if q is not None:
                    q.stopped(k)
        fleet.set_up(i, up_now)
        tracker.touch(i)
        if q is not None and up_now:
            touch(i)
        if check:
            fleet.check_invariants()

    def sample(_: int) -> None:
        t = clock.now
        up = fleet.up
        cap = st.capacity[:, up].sum(axis=1)
        alloc = st.allocated[:, up].sum(axis=1)
        s_time.append(t)
        s_up.append(int(up.sum()))
        s_active.append(int(np.count_nonzero(st.workload_count[up] > 0)))
        s_alloc.append(np.divide(alloc, cap, out=np.zeros_like(alloc), where=cap > 0))
        if model is not None:
            f = float(tracker.current()[up].sum())
            pcap = model.capacity(fleet)
            pfree = pcap - _primary_used(fleet, model)
            s_frag.append(f / pcap if pcap > 0 else 0.0)
            s_free.append(f / pfree if pfree > 0 else float("nan"))
        if check:
            _check_books(fleet, running, job_host, dem)
            fleet.check_invariants()

    # samples first, then host changes in input order, then the first arrival: scheduling order
    # is the tie-break among equals of one kind (arrivals are fed one at a time, in trace order)
    for i in range(sample_t.size):
        clock.schedule(sample, i, at=float(sample_t[i]), priority=SAMPLE)
    if host_events is not None:
        for t, h, up in zip(host_events.time.tolist(), host_events.host.tolist(), host_events.up.tolist(),
                            strict=True):
            clock.schedule(host_change, (h, bool(up)), at=t, priority=HOST_UP if up else HOST_DOWN)
    if n:
        clock.schedule(arrive, 0, at=float(arr[0]), priority=ARRIVE)
    if q is not None and horizon is None:  # after the last arrival, until the queue is served
        clock.run(until=None)
    else:
        clock.run(until=end)  # nothing after the horizon
    if progress is not None and pending_progress:
        progress(pending_progress)
    rejected = n - accepted
    if q is not None and q.pending:
        reasons["still queued at the end"] = len(q.pending)
    if sum(reasons.values()) != rejected:  # arrivals after the horizon were never offered
        reasons["not offered (after horizon)"] = rejected - sum(reasons.values())
    return OnlineResult(
        policy=policy.name,
        trace=workload.name,
        resources=st.resources.names,
        jobs=n,
        accepted=accepted,
        rejected=rejected,
        evicted=evicted,
        reasons=reasons,
        wall_s=time.perf_counter() - t0,
        time_unit=time_unit,
        time=np.array(s_time),
        active_hosts=np.array(s_active, dtype=np.int64),
        up_hosts=np.array(s_up, dtype=np.int64),
        alloc_frac=np.array(s_alloc) if s_alloc else np.zeros((0, len(st.resources))),
        frag=np.array(s_frag),
        frag_of_free=np.array(s_free),
        primary=_primary_name(fleet, model),
        first_rejection=first_rejection,
        queue=q.report() if q is not None else None,
    )


def _primary_used(fleet: Fleet, model: FragModel) -> float:
    if model.primary_row is None:
        return float((fleet.dev_cap - fleet.dev_free)[fleet.up].sum())
    return float(fleet.state.allocated[model.primary_row, fleet.up].sum())


def _primary_name(fleet: Fleet, model: FragModel | None) -> str:
    if model is None:
        return ""
    if model.primary_row is None:
        return "devices"
    return fleet.state.resources.names[model.primary_row]


def _check_books(fleet: Fleet, running: np.ndarray, job_host: np.ndarray, demand: np.ndarray) -> None:
    """The allocation of every host equals the sum of the demands of the jobs running there."""
    expect = np.zeros((fleet.n, demand.shape[1]))
    idx = np.flatnonzero(running)
    np.add.at(expect, job_host[idx], demand[idx])
    if not np.allclose(expect.T, fleet.state.allocated, atol=1e-6):
        raise AssertionError("host allocations differ from the running jobs' demands")
