"""The event core: ordering, cancellation, timers, run-until, step, processes and loops."""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from typing import Any

import pytest

from poolvisor.clock import NORMAL, Loop, Phase, Process, SimClock


def test_same_instant_orders_by_priority_then_scheduling_order() -> None:
    c = SimClock()
    out: list[str] = []
    c.schedule(out.append, "t2-p0-first", at=2.0)
    c.schedule(out.append, "t1-p5", at=1.0, priority=5)
    c.schedule(out.append, "t1-p-1", at=1.0, priority=-1)
    c.schedule(out.append, "t1-p5-second", at=1.0, priority=5)
    c.schedule(out.append, "t1-p0", at=1.0)
    c.schedule(out.append, "t2-p0-second", at=2.0)
    c.schedule(out.append, "t0.5-p9", at=0.5, priority=9)
    assert c.run() == 7
    assert out == ["t0.5-p9", "t1-p-1", "t1-p0", "t1-p5", "t1-p5-second", "t2-p0-first", "t2-p0-second"]
    assert c.now == 2.0


def test_order_is_the_sorted_key_order_on_random_inputs() -> None:
    """(time, priority, seq) is a total order: the run equals a stable sort of the schedule."""
    rng = random.Random(7)
    c = SimClock()
    ran: list[int] = []
    keys = []
    for i in range(2000):
        t, p = float(rng.randint(0, 30)), rng.randint(-2, 2)
        keys.append((t, p, i))
        c.schedule(ran.append, i, at=t, priority=p)
    c.run()
    assert ran == [i for _, _, i in sorted(keys)]


def test_payloads_are_never_compared() -> None:
    """Ties never fall through to the payload (dicts are not orderable)."""
    c = SimClock()
    seen: list[dict[str, int]] = []
    for i in range(50):
        c.schedule(seen.append, {"i": i}, at=1.0)
    c.run()
    assert [d["i"] for d in seen] == list(range(50))


def test_events_scheduled_while_running_keep_the_rule() -> None:
    c = SimClock()
    out: list[str] = []

    def first(_: Any) -> None:
        out.append("first")
        c.schedule(out.append, "same instant, later seq", priority=NORMAL)
        c.schedule(out.append, "same instant, urgent", priority=-10)
        c.schedule(out.append, "later", delay=1.5)

    c.schedule(first, at=1.0)
    c.schedule(out.append, "already there", at=1.0)
    c.run()
    assert out == ["first", "same instant, urgent", "already there", "same instant, later seq", "later"]
    assert c.now == 2.5


def test_cancellation_is_lazy_and_exact() -> None:
    c = SimClock()
    out: list[int] = []
    evs = [c.schedule(out.append, i, at=float(i)) for i in range(10)]
    assert evs[3].cancel() and not evs[3].cancel()  # second cancel is a no-op
    assert c.cancel(evs[5])
    assert len(c) == 8
    c.run(until=6.0)
    assert out == [0, 1, 2, 4, 6]
    assert not evs[4].cancel()  # already ran
    c.schedule(lambda _: evs[8].cancel(), at=7.5)  # cancelled by another event
    c.run()
    assert out == [0, 1, 2, 4, 6, 7, 9]
    assert len(c) == 0 and c.peek() == math.inf


def test_mass_cancellation_compacts_the_heap_during_a_run() -> None:
    c = SimClock()
    out: list[int] = []
    evs = [c.schedule(out.append, i, at=float(i)) for i in range(1, 1001)]

    def cancel_odd(_: Any) -> None:
        for e in evs[::2]:
            e.cancel()

    c.schedule(cancel_odd, at=0.5)
    c.run()
    assert out == list(range(2, 1001, 2))
    assert len(c._heap) == 0 and c._dead == 0


def test_peek_skips_cancelled_events() -> None:
    c = SimClock()
    a = c.schedule(print, at=1.0)
    c.schedule(print, at=2.0)
    a.cancel()
    assert c.peek() == 2.0 and len(c) == 1


def test_periodic_timer_accumulates_like_a_loop_and_stops_by_count_or_until() -> None:
    c = SimClock()
    ticks: list[float] = []
    c.every(300.0, ticks.append, start=300.1, count=288)
    c.run()
    t, expect = 0.1, []
    for _ in range(288):
        t = t + 300.0
        expect.append(t)
    assert ticks == expect  # bit for bit: the same doubles a `t += interval` loop produces
    c2 = SimClock()
    t2: list[float] = []
    c2.every(2.0, t2.append, until=7.0)
    c2.run()
    assert t2 == [2.0, 4.0, 6.0]


def test_timer_cancel_from_inside_and_outside() -> None:
    c = SimClock()
    ticks: list[float] = []
    timer = c.every(1.0, lambda t: (ticks.append(t), t >= 3.0 and timer.cancel()), start=1.0)
    c.run()
    assert ticks == [1.0, 2.0, 3.0] and not timer.active and timer.next_at is None
    other: list[float] = []
    t2 = c.every(1.0, other.append)
    c.schedule(lambda _: t2.cancel(), at=5.5)
    c.run()
    assert other == [4.0, 5.0]


def test_a_tick_that_raises_keeps_the_timer() -> None:
    c = SimClock()
    ticks: list[float] = []

    def tick(t: float) -> None:
        ticks.append(t)
        if t == 2.0:
            raise RuntimeError("tick failed")

    c.every(1.0, tick, count=4)
    with pytest.raises(RuntimeError):
        c.run()
    assert c.now == 2.0 and len(c) == 1
    c.run()
    assert ticks == [1.0, 2.0, 3.0, 4.0]


def test_timer_rejects_bad_intervals() -> None:
    c = SimClock()
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="interval"):
            c.every(bad, print)


def test_run_until_is_inclusive_and_leaves_the_clock_there() -> None:
    c = SimClock()
    out: list[float] = []
    for t in (1.0, 2.0, 3.0, 4.0):
        c.schedule(out.append, t, at=t)
    assert c.run(until=3.0) == 3
    assert out == [1.0, 2.0, 3.0] and c.now == 3.0
    assert c.run(until=3.5) == 0 and c.now == 3.5  # idle time passes
    assert c.run(until=10.0) == 1 and c.now == 10.0
    assert c.run(until=5.0) == 0 and c.now == 10.0  # never backwards


def test_stop_ends_the_run_after_the_current_event() -> None:
    c = SimClock()
    out: list[int] = []
    c.schedule(out.append, 1, at=1.0)
    c.schedule(lambda _: c.stop(), at=2.0)
    c.schedule(out.append, 3, at=3.0)
    assert c.run() == 2 and c.now == 2.0 and out == [1]
    c.run()
    assert out == [1, 3]


def test_step_runs_one_event() -> None:
    c = SimClock(start=10.0)
    out: list[str] = []
    c.schedule(out.append, "b", delay=2.0)
    c.schedule(out.append, "a", delay=1.0)
    assert c.step() and out == ["a"] and c.now == 11.0
    assert c.step() and out == ["a", "b"] and c.now == 12.0
    assert not c.step()


def test_the_past_is_refused_on_simulated_time() -> None:
    c = SimClock(start=5.0)
    with pytest.raises(ValueError, match="clock is at 5.0"):
        c.schedule(print, at=4.0)
    with pytest.raises(ValueError):
        c.schedule(print, at=math.nan)
    with pytest.raises(ValueError, match="not both"):
        c.schedule(print, at=6.0, delay=1.0)


def test_trace_records_what_ran_in_order() -> None:
    c = SimClock(trace=True)

    def measure(_: Any) -> None: ...
    def plan(_: Any) -> None: ...
    def act(_: Any) -> None: ...

    for fn, ph in ((act, Phase.ACT), (plan, Phase.PLAN), (measure, Phase.MEASURE)):
        c.every(60.0, fn, priority=ph, count=2)
    c.run()
    assert c.log == [
        (60.0, 10, "measure"), (60.0, 20, "plan"), (60.0, 30, "act"),
        (120.0, 10, "measure"), (120.0, 20, "plan"), (120.0, 30, "act"),
    ]  # fmt: skip


def test_process_waits_and_returns() -> None:
    c = SimClock()
    seen: list[tuple[str, float]] = []

    def body() -> Generator[float, float, str]:
        seen.append(("start", c.now))
        t = yield 5.0
        seen.append(("after 5", t))
        t = yield 0.0
        seen.append(("same instant", t))
        return "done"

    p = Process(c, body(), at=1.0)
    c.run()
    assert seen == [("start", 1.0), ("after 5", 6.0), ("same instant", 6.0)]
    assert not p.alive and p.value == "done"


def test_process_cancel_closes_the_generator() -> None:
    c = SimClock()
    closed: list[bool] = []

    def body() -> Generator[float, float, None]:
        try:
            while True:
                yield 1.0
        finally:
            closed.append(True)

    p = Process(c, body())
    c.run(until=3.0)
    p.cancel()
    c.run(until=10.0)
    assert closed == [True] and not p.alive and len(c) == 0


def test_process_refuses_negative_delays() -> None:
    c = SimClock()

    def body() -> Generator[float, float, None]:
        yield -1.0

    p = Process(c, body())
    with pytest.raises(ValueError, match="delay >= 0"):
        c.run()
    assert not p.alive


def test_loop_steps_pauses_triggers_and_reports() -> None:
    c = SimClock()
    steps: list[float] = []
    loop = Loop(c, steps.append, 10.0, name="reconcile").start()
    c.run(until=25.0)
    assert steps == [0.0, 10.0, 20.0]
    loop.pause()
    c.run(until=45.0)
    loop.resume()
    loop.trigger()
    loop.trigger()  # coalesced with the pending one
    c.run(until=50.0)
    assert steps == [0.0, 10.0, 20.0, 45.0, 50.0]
    st = loop.status()
    assert (st.name, st.steps, st.skipped, st.errors) == ("reconcile", 5, 2, 0)
    assert st.running and not st.paused
    assert st.next_at == 60.0 and st.last_at == 50.0
    loop.stop()
    c.run(until=100.0)
    assert len(steps) == 5 and not loop.status().running


def test_loop_errors_are_counted_then_raised_or_handed_over() -> None:
    c = SimClock()

    def boom(t: float) -> None:
        raise RuntimeError(f"failed at {t}")

    Loop(c, boom, 1.0).start()
    with pytest.raises(RuntimeError, match="failed at 0.0"):
        c.run(until=5.0)
    c2 = SimClock()
    errors: list[Exception] = []
    loop = Loop(c2, boom, 1.0, on_error=errors.append).start()
    c2.run(until=2.0)
    st = loop.status()
    assert len(errors) == 3 and st.errors == 3 and st.last_error == "RuntimeError: failed at 2.0"


def test_loop_cannot_start_twice() -> None:
    c = SimClock()
    loop = Loop(c, print, 1.0).start()
    with pytest.raises(RuntimeError, match="already running"):
        loop.start()
