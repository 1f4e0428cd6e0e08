"""WallClock: real sleeping, early wake-up from another thread, and the same rules as SimClock."""

from __future__ import annotations

import threading
import time
from typing import Any

from poolvisor.clock import Loop, Phase, SimClock, WallClock
from poolvisor.clock.core import Clock


def _run_in_thread(c: WallClock, until: float | None = None) -> threading.Thread:
    th = threading.Thread(target=c.run, kwargs={"until": until}, daemon=True)
    th.start()
    return th


def test_now_reads_like_unix_time_and_moves_forward() -> None:
    c = WallClock()
    a = c.now
    assert abs(a - time.time()) < 1.0
    time.sleep(0.01)
    assert c.now > a
    assert abs(WallClock(origin=100.0).now - 100.0) < 1.0


def test_sleeps_until_the_event_is_due() -> None:
    c = WallClock(origin=0.0)
    fired: list[float] = []
    c.schedule(lambda _: fired.append(c.now), at=0.15)
    w0 = time.monotonic()
    assert c.run(until=0.2) == 1
    assert fired and 0.15 <= fired[0] < 0.5
    assert time.monotonic() - w0 >= 0.2 - 0.005  # until is waited for on the wall


def test_an_event_from_another_thread_wakes_the_sleeping_loop_early() -> None:
    """The loop sleeps towards an event 30 s away; a new event for now must run at once."""
    c = WallClock()
    got = threading.Event()
    far: list[bool] = []
    c.schedule(lambda _: far.append(True), delay=30.0)
    th = _run_in_thread(c)
    time.sleep(0.05)  # the loop is asleep now
    t0 = time.monotonic()
    c.schedule(lambda _: got.set())  # from this (other) thread
    assert got.wait(2.0)
    woke_in = time.monotonic() - t0
    c.stop()
    th.join(2.0)
    assert not th.is_alive() and not far
    assert woke_in < 1.0


def test_notify_and_stop_wake_a_loop_waiting_on_an_empty_queue() -> None:
    c = WallClock()
    th = _run_in_thread(c)
    time.sleep(0.05)
    c.notify()  # wakes, finds nothing, sleeps again
    time.sleep(0.05)
    assert th.is_alive()
    t0 = time.monotonic()
    c.stop()
    th.join(2.0)
    assert not th.is_alive() and time.monotonic() - t0 < 1.0


def test_cancel_from_another_thread() -> None:
    c = WallClock()
    ran: list[int] = []
    ev = c.schedule(ran.append, 1, delay=0.2)
    c.schedule(ran.append, 2, delay=0.25)
    th = _run_in_thread(c, until=c.now + 0.4)
    time.sleep(0.05)
    assert ev.cancel()
    th.join(3.0)
    assert ran == [2]


def test_past_instants_are_due_at_once_in_key_order() -> None:
    c = WallClock()
    out: list[str] = []
    t = c.now - 5.0
    c.schedule(out.append, "late p1", at=t, priority=1)
    c.schedule(out.append, "later p0", at=t + 1.0)
    c.schedule(out.append, "late p0", at=t)
    c.run(until=c.now)
    assert out == ["late p0", "late p1", "later p0"]


def test_step_waits_for_the_next_event_and_reports_an_empty_queue() -> None:
    c = WallClock()
    out: list[int] = []
    c.schedule(out.append, 7, delay=0.05)
    assert c.step() and out == [7]
    assert not c.step()


def test_a_late_timer_skips_missed_ticks_instead_of_bursting() -> None:
    c = WallClock(origin=0.0)
    ticks: list[float] = []

    def slow(t: float) -> None:
        ticks.append(t)
        if len(ticks) == 1:
            time.sleep(0.35)  # misses the ticks at 0.1, 0.2 and 0.3

    c.every(0.1, slow, start=0.0)
    c.run(until=0.55)
    assert ticks[0] == 0.0
    assert ticks[1] >= 0.35 and len(ticks) <= 4  # no burst of 0.1, 0.2, 0.3 at once
    assert all(abs(t / 0.1 - round(t / 0.1)) < 1e-9 for t in ticks)  # still on the grid


def _controller(clock: Clock, log: list[tuple[str, float]]) -> Loop:
    """A toy controller: measure, plan and act as three phases of one reconcile instant."""

    def reconcile(t: float) -> None:
        clock.schedule(lambda _: log.append(("act", t)), priority=Phase.ACT)
        clock.schedule(lambda _: log.append(("plan", t)), priority=Phase.PLAN)
        log.append(("measure", t))

    return Loop(clock, reconcile, 0.05, priority=Phase.MEASURE, name="ctl")


def test_the_same_loop_runs_on_both_clocks_in_the_same_order() -> None:
    sim_log: list[tuple[str, float]] = []
    sim = SimClock()
    _controller(sim, sim_log).start()
    sim.run(until=0.2)
    wall_log: list[tuple[str, float]] = []
    wall = WallClock(origin=0.0)
    loop = _controller(wall, wall_log).start(at=0.0)
    wall.run(until=0.2)
    names = [n for n, _ in sim_log]
    assert names[:3] == ["measure", "plan", "act"] and len(sim_log) == 15
    assert [n for n, _ in wall_log] == names[: len(wall_log)] and len(wall_log) >= 9
    assert [t for _, t in wall_log] == [t for _, t in sim_log[: len(wall_log)]]
    assert loop.status().steps == len(wall_log) // 3


def test_trigger_from_another_thread_runs_a_step_now() -> None:
    c = WallClock()
    steps: list[float] = []
    done = threading.Event()

    def step(t: float) -> Any:
        steps.append(t)
        if len(steps) == 2:
            done.set()

    loop = Loop(c, step, 3600.0).start()
    th = _run_in_thread(c)
    time.sleep(0.05)
    loop.trigger()
    assert done.wait(2.0)
    c.stop()
    th.join(2.0)
    assert len(steps) == 2 and loop.status().steps == 2
