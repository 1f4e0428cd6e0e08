"""Both simulators run on the one clock core: each records its event order through a tracing
SimClock, and that order is the core's rule (time, then priority, then scheduling order)."""

from __future__ import annotations

import dataclasses

import numpy as np

from poolvisor.bench.sim_scale import scale_scenario
from poolvisor.clock import SimClock
from poolvisor.sim import engine
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.online.engine import ARRIVE, DEPART, HOST_DOWN, SAMPLE, HostEvents, replay
from poolvisor.sim.online.fleet import Fleet
from poolvisor.sim.online.policies import make_policy
from poolvisor.traces.workload import Workload


def _is_key_ordered(log: list[tuple[float, int, str]]) -> bool:
    keys = [(t, p) for t, p, _ in log]
    return keys == sorted(keys)


def test_planetlab_simulator_runs_on_the_clock() -> None:
    rng = np.random.default_rng(3)
    util = np.clip(rng.gamma(2.0, 14.0, size=(400, 289)), 0, 100).round()
    sc = dataclasses.replace(scale_scenario(util, 40), end_s=300.0 * 30 + 0.1)
    clock = SimClock(start=sc.start_s, trace=True)
    sim = Simulator(sc, PolicySpec.parse("thr-mmt", 0.8), compat=False, record=True)
    res = sim.run(clock=clock)
    log = clock.log
    assert _is_key_ordered(log)
    ticks = [(t, p) for t, p, name in log if name == "tick"]
    assert [t for t, _ in ticks] == res.time_s.tolist() and len(ticks) == 30
    assert {p for _, p in ticks} == {engine.TICK}
    # one completion event per distinct completion instant of the migrations started, up to the end
    assert sim.migrations > 50
    done = {
        t + float(sc.vm_ram[v]) / float(sim.mig_bw[d]) for t, v, _, d in sim.trace_migrations
    }
    completes = [t for t, _, name in log if name == "complete"]
    assert completes == sorted(x for x in done if x <= sc.end_s)
    assert log[-1][2] == "end" and clock.now <= sc.end_s
    # a tick and the completions on the same instant: the tick first (CloudSim's order)
    assert engine.TICK < engine.COMPLETE
    # the default clock gives the same run
    again = Simulator(sc, PolicySpec.parse("thr-mmt", 0.8), compat=False).run()
    assert {k: v for k, v in again.metrics.items() if k != "wall_s"} == {
        k: v for k, v in res.metrics.items() if k != "wall_s"
    }


def test_online_replay_runs_on_the_clock() -> None:
    fleet = Fleet(["a", "b"], ("cpu", "memory"), np.array([[1.0, 1.0], [1.0, 1.0]]))
    # job 0 leaves at 4 while job 2 arrives at 4: the departure runs first and makes room
    wl = Workload(
        "t",
        ("cpu", "memory"),
        np.array([0.0, 1.0, 4.0, 4.0]),
        np.array([4.0, 9.0, 9.0, np.inf]),
        np.array([[0.6, 0.1], [0.6, 0.1], [0.6, 0.1], [0.3, 0.1]]),
    )
    ev = HostEvents(np.array([6.0]), np.array([1]), np.array([False]))
    clock = SimClock(start=0.0, trace=True)
    r = replay(fleet, wl, make_policy("first-fit"), host_events=ev, samples=3, horizon=8.0, clock=clock)
    log = clock.log
    assert _is_key_ordered(log)
    assert [name for *_, name in log] == [
        "arrive", "sample", "arrive", "depart", "arrive", "arrive", "sample", "host_change", "sample",
    ]  # fmt: skip
    at4 = [(p, name) for t, p, name in log if t == 4.0]
    assert at4 == [(DEPART, "depart"), (ARRIVE, "arrive"), (ARRIVE, "arrive"), (SAMPLE, "sample")]
    assert (6.0, HOST_DOWN, "host_change") in log
    assert clock.now == 8.0  # the horizon; departures at 9 never ran
    assert (r.accepted, r.rejected, r.evicted) == (4, 0, 1)  # job 1 on b at 6; 0, 2, 3 on a
