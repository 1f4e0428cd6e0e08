"""BackgroundLoop, the one runner of serve's periodic jobs: leader gate, uniform failure logging,
idempotent start/stop, on a caller's SimClock or on its own WallClock thread."""

from __future__ import annotations

import logging
import threading

import pytest

from poolvisor.clock import SimClock
from poolvisor.clock.background import BackgroundLoop
from poolvisor.domain.errors import ConflictError


def test_steps_every_interval_only_while_leading() -> None:
    clock, ran, lead = SimClock(), [], [True]
    bg = BackgroundLoop("t", ran.append, 10.0, clock=clock, is_leader=lambda: lead[0])
    bg.start()
    clock.run(until=20.0)
    lead[0] = False
    clock.run(until=40.0)
    lead[0] = True
    clock.run(until=50.0)
    assert ran == [0.0, 10.0, 20.0, 50.0] and bg.not_leader == 2
    assert bg.status().steps == 6 and bg.status().next_at == 60.0


def test_delay_first_and_idempotent_start_stop() -> None:
    clock, ran = SimClock(), []
    bg = BackgroundLoop("t", ran.append, 5.0, clock=clock, delay_first=True)
    bg.start()
    bg.start()  # already running: nothing more scheduled
    clock.run(until=12.0)
    assert ran == [5.0, 10.0]
    bg.stop()
    bg.stop()
    assert clock.run(until=100.0) == 0 and not bg.running and not bg.status().running
    bg.start()  # a stopped loop starts again
    clock.run(until=105.0)
    assert ran == [5.0, 10.0, 105.0]


def test_failures_are_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    clock, calls = SimClock(), []

    def step(t: float) -> None:
        calls.append(t)
        if t == 0.0:
            raise ConflictError("database away")
        if t == 1.0:
            raise ValueError("a bug")

    bg = BackgroundLoop("t", step, 1.0, clock=clock, what="test round", log=logging.getLogger("poolvisor.t"))
    bg.start()
    with caplog.at_level(logging.WARNING, logger="poolvisor.t"):
        clock.run(until=2.0)
    assert calls == [0.0, 1.0, 2.0] and bg.status().errors == 2
    warn, err = caplog.records
    assert warn.levelno == logging.WARNING
    assert "test round failed (retrying in 1 s): database away" in warn.message
    assert err.levelno == logging.ERROR and err.exc_info is not None and "a bug" in str(err.exc_info[1])


def test_own_wall_clock_runs_in_a_thread_and_stop_joins_it() -> None:
    ran = threading.Event()
    bg = BackgroundLoop("wall-test", lambda _t: ran.set(), 0.02)
    bg.start()
    assert ran.wait(5.0)
    th = bg._thread
    assert th is not None and th.name == "poolvisor-wall-test" and th.daemon
    bg.stop()
    assert not th.is_alive() and bg._thread is None and not bg.running
    bg.stop()  # idempotent
    ran.clear()
    bg.start()  # and it starts again, on a new thread
    assert ran.wait(5.0)
    bg.stop()
