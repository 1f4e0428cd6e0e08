"""The digital twin (sim/twin.py) and what actually happened (sim/outcome.py).

The twin must run the controller loop itself (the function `poolvisor serve`'s loop calls, with
the one planner), never a second copy; the "actual" side must be read from what the store
recorded (events, samples), never re-simulated; nothing is written to the live store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, update

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app
from poolvisor.clock import SimClock
from poolvisor.drivers.base import DriverWorkload
from poolvisor.policies.balancing import planner
from poolvisor.services import Services, open_services
from poolvisor.services import controller as controller_module
from poolvisor.services.controller import ControllerService
from poolvisor.services.controller_loop import ControllerLoop
from poolvisor.sim.outcome import outcome, recorded_timeline
from poolvisor.sim.twin import run_twin
from poolvisor.store.rows import EventRow, TaskRow, UtilizationSampleRow

END = 1_800_000_000.0  # the window's end (epoch s); aligned on 300 s
HOURS = 2.0
START = END - HOURS * 3600


def _backdate(svc: Services, when: float, *, after_id: int = 0) -> None:
    """Date the events with an id above `after_id` at `when` (the store stamps the wall clock)."""
    at = datetime.fromtimestamp(when, UTC)
    svc.ctx.write(lambda s: s.execute(update(EventRow).where(EventRow.id > after_id).values(time=at)))


def _record(svc: Services, vms: list[str], util: np.ndarray, t0: float) -> None:
    svc.utilization.record_utilization([(v, t0 + 300 * k, float(util[i, k]))
                                        for i, v in enumerate(vms) for k in range(util.shape[1])])


@pytest.fixture
def live(tmp_path) -> Iterator[Services]:
    """Pool p: 4 hosts of 16 vCPUs (overcommitted 2x); 8 VMs of 3 vCPUs created 3 h before END
    (best fit packs them on h0, overloaded: 24 vCPUs at 50..100 %), their CPU recorded every 300 s
    from then on; h3 switched off an hour before the window."""
    s = open_services(f"sqlite:///{tmp_path / 'live.db'}")
    s.catalog.create_pool("p")
    for i in range(4):
        s.hosts.create_host(f"h{i}", {"vcpu": 16, "memory_mib": 65536}, pool="p", domain=f"r{i}",
                            overcommit={"vcpu": 2.0})
    s.catalog.create_project("demo")
    for i in range(8):
        s.workloads.create_workload("demo", f"vm{i}", demand={"vcpu": 3, "memory_mib": 4096}, pool="p")
    s.drivers.power("h3").power_off("h3")
    from poolvisor.domain.models import HostState

    s.hosts.mark_state("h3", HostState.STANDBY, "host.state", "powered off by the controller")
    _backdate(s, END - 3 * 3600)
    vms = [f"demo/vm{i}" for i in range(8)]
    steps = int(3 * 3600 / 300) + 1
    util = np.clip(np.random.default_rng(7).uniform(0.5, 1.0, (8, steps)), 0, 1)
    _record(s, vms, util, END - 3 * 3600)
    yield s
    s.close()


def _counts(svc: Services) -> tuple[int, int, int]:
    def tx(s: Any) -> tuple[int, int, int]:
        return (s.scalar(select(func.count()).select_from(EventRow)),
                s.scalar(select(func.count()).select_from(TaskRow)),
                s.scalar(select(func.count()).select_from(UtilizationSampleRow)))

    return svc.ctx.read(tx)


def test_the_twin_runs_the_function_the_live_loop_runs(live: Services, tmp_path, monkeypatch) -> None:
    """One spy on the controller's round and one on the shared planner, installed once: the
    live loop (ControllerLoop on a clock, as `serve` runs it) and the twin are both seen in them."""
    rounds: list[int] = []  # id() of the ControllerService each round ran on
    plans: list[str] = []
    real_reconcile = ControllerService.reconcile
    real_plan = planner.plan_balancing

    def spy_reconcile(self: ControllerService, now: float | None = None) -> Any:
        rounds.append(id(self))
        return real_reconcile(self, now)

    def spy_plan(view: Any, policy: Any, **kw: Any) -> Any:
        plans.append(policy.name)
        return real_plan(view, policy, **kw)

    monkeypatch.setattr(ControllerService, "reconcile", spy_reconcile)
    monkeypatch.setattr(controller_module, "plan_balancing", spy_plan)
    # the live loop, one round
    clock = SimClock(END)
    loop = ControllerLoop(live, 30.0, clock=clock)
    loop.start()
    clock.run(until=END + 30)
    assert loop.rounds == 1 and rounds == [id(live.controller)]
    live_plans = len(plans)
    assert live_plans >= 1
    # the twin: every one of its rounds went through the same two functions
    r = run_twin(live, "p", "thr-mmt", HOURS, param=0.8, end_s=END)
    twin_rounds = [c for c in rounds[1:] if c != id(live.controller)]
    assert r.rounds == len(twin_rounds) == len(rounds) - 1 > 0
    assert "thr-mmt-0.8" in plans[live_plans:]  # the twin's policy, planned by the one planner
    assert r.policy == "thr-mmt-0.8"


def test_actual_side_is_read_from_recorded_events_and_samples(live: Services) -> None:
    # a migration recorded an hour into the window: h0 -> h1
    last = live.events.last_event_id()
    live.workloads.migrate_workload("demo", "vm0", "h1")
    _backdate(live, START + 3600 + 10, after_id=last)
    before = _counts(live)
    tl = recorded_timeline(live, "p", START, END, 300.0)
    assert tl.hosts == ("h0", "h1", "h2", "h3") and len(tl.vms) == 8
    v0 = tl.vms.index("demo/vm0")
    k = tl.step_of(START + 3600 + 10)
    assert (tl.host_of[v0, :k] == 0).all() and (tl.host_of[v0, k + 1:] == 1).all()
    assert tl.migrations == [(k, v0, "h0", "h1")]
    assert (~tl.on[3]).all() and tl.on[:3].all()  # h3 standby the whole window, from its event
    # the CPU use is the recorded samples
    hist = live.utilization.utilization_history(list(tl.vms), 300.0, steps=tl.steps, until=END)
    np.testing.assert_array_equal(tl.util, hist.util)
    got = outcome(tl)
    assert got["migrations"] == 1 and got["hosts_on_max"] == 3
    # energy by hand: hosts h0..h2 on, linear 100..250 W on the recorded use
    use = tl.util * 3.0
    watts = 0.0
    for step in range(tl.steps):
        for h in range(3):
            u = use[tl.host_of[:, step] == h, step].sum() / 16
            watts += 100 + 150 * min(u, 1.0)
    assert got["energy_kwh"] == pytest.approx(watts * 300 / 3.6e6, abs=1e-4)
    # not re-simulated: what the driver reports now changes nothing; the records do
    for i in range(8):
        w = live.workloads.get_workload("demo", f"vm{i}")
        assert w.host is not None
        d = live.drivers.driver_of(w.host)
        d.set_utilization(w.host, DriverWorkload(f"demo/vm{i}", "vm", {}), 0.0)  # type: ignore[attr-defined]
    assert outcome(recorded_timeline(live, "p", START, END, 300.0)) == got
    live.ctx.write(lambda s: s.execute(update(EventRow).where(EventRow.kind == "workload.migrated")
                                       .values(kind="workload.note")))
    assert outcome(recorded_timeline(live, "p", START, END, 300.0))["migrations"] == 0
    assert _counts(live) == before  # reading wrote nothing


def test_the_twin_replays_the_window_and_writes_nothing_live(live: Services) -> None:
    before = _counts(live)
    r = run_twin(live, "p", "adaptive", HOURS, end_s=END, round_s=300)
    assert _counts(live) == before  # the twin has its own store
    actual = outcome(recorded_timeline(live, "p", START, END, 300.0))
    assert r.actual == actual  # the actual side is the recorded one
    assert r.steps == 25 and r.rounds == 25 and r.vms == 8 and r.hosts == 4
    # the twin started where the pool was: 8 VMs on h0 (overloaded), h3 off; the controller relieves h0
    assert r.twin["migrations"] > 0
    assert r.twin["overloaded_host_hours"] < r.actual["overloaded_host_hours"]
    assert r.twin["hosts_on_max"] <= 4
    assert json.loads(json.dumps(r.to_dict()))["twin"] == r.twin


def test_a_workload_created_inside_the_window_arrives_in_the_twin_then(live: Services) -> None:
    last = live.events.last_event_id()
    live.workloads.create_workload("demo", "late", demand={"vcpu": 2, "memory_mib": 2048}, pool="p")
    _backdate(live, START + 1800 + 5, after_id=last)
    _record(live, ["demo/late"], np.full((1, 11), 0.5), START + 2100)  # sampled after it was created
    tl = recorded_timeline(live, "p", START, END, 300.0)
    v = tl.vms.index("demo/late")
    k = tl.step_of(START + 1800 + 5)
    assert (tl.host_of[v, :k] == -1).all() and (tl.host_of[v, k + 1:] >= 0).all()
    r = run_twin(live, "p", "adaptive", HOURS, end_s=END, round_s=600)
    assert not r.notes, r.notes
    assert r.vms == 9


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: app(argv, standalone_mode=True))
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_cli_whatif_policy_prints_both_sides(live: Services, tmp_path, capsys, monkeypatch) -> None:
    import time

    monkeypatch.setattr(time, "time", lambda: END)  # the window ends at END
    db = str(tmp_path / "live.db")
    code, out, err = _cli(["whatif", "--db", db, "--pool", "p", "--policy", "adaptive", "--hours", "1",
                           "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["policy"] == "adaptive" and d["steps"] == 13 and set(d["actual"]) == set(d["twin"])
    code, out, err = _cli(["whatif", "--db", db, "--pool", "p", "--policy", "lr-mmt", "--param", "1.1",
                           "--hours", "1", "--round", "600"], capsys)
    assert code == 0, err
    assert "actual (recorded)" in out and "twin: lr-mmt-1.1" in out and "energy_kwh" in out
    for bad, msg in ((["--policy", "adaptive", "--policies", "lr-mmt"], "not --policies"),
                     (["--policy", "nope"], "unknown balancing policy"),
                     (["--hours", "2"], "go with --policy"),
                     (["--policy", "adaptive", "--hours", "0"], "hours must be")):
        code, out, err = _cli(["whatif", "--db", db, "--pool", "p", *bad], capsys)
        assert code != 0 and msg in err and err.count("\n") == 1, err


def test_a_history_loaded_before_the_creation_counts_from_its_first_sample(live: Services) -> None:
    """`serve --demo` creates its VMs now with a day of samples behind them: they ran all along."""
    last = live.events.last_event_id()
    live.workloads.create_workload("demo", "seeded", demand={"vcpu": 1, "memory_mib": 1024}, pool="p")
    _backdate(live, END - 600, after_id=last)  # created 10 minutes before the end...
    _record(live, ["demo/seeded"], np.full((1, 30), 0.4), START - 1800)  # ...sampled long before
    tl = recorded_timeline(live, "p", START, END, 300.0)
    v = tl.vms.index("demo/seeded")
    assert (tl.host_of[v] >= 0).all()
