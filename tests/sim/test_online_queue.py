"""The online simulator's waiting queue: arrivals that do not fit wait and are served by the live
queue's discipline code (one policy core), with wait times per class and project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from poolvisor.policies import queueing
from poolvisor.services import open_services
from poolvisor.sim.online.engine import replay
from poolvisor.sim.online.fleet import Fleet
from poolvisor.sim.online.policies import make_policy
from poolvisor.traces.workload import Workload

SPOT, LOW, NORMAL, HIGH = 0, 1, 2, 3


def trace() -> Workload:
    """One 4-cpu host, full until t=10; then a low 2-cpu job of a, a high 2-cpu job of b and a
    normal 4-cpu job of a wait (arriving at 1, 2, 3); each runs 5 s."""
    arrival = np.array([0.0, 1.0, 2.0, 3.0])
    run = np.array([10.0, 5.0, 5.0, 5.0])
    return Workload("t", ("cpu",), arrival, arrival + run, np.array([[4.0], [2.0], [2.0], [4.0]]),
                    project=np.array([0, 0, 1, 0]), project_names=("a", "b"),
                    rank=np.array([NORMAL, LOW, HIGH, NORMAL]))


def run(discipline: str | None) -> Any:
    return replay(Fleet(["h0"], ("cpu",), np.array([[4.0]])), trace(), make_policy("first-fit"),
                  check=True, queue=discipline)


def test_without_a_queue_they_are_rejected() -> None:
    r = run(None)
    assert r.accepted == 1 and r.rejected == 3 and r.queue is None


def test_strict_priority_serves_the_high_class_first_and_jobs_run_their_duration() -> None:
    r = run("priority")
    assert r.accepted == 4 and r.rejected == 0
    q = r.queue
    # at 10: high b (waited 8) and low a (waited 9) fit; normal a (4 cpu) waits until both leave at 15
    assert q["by_class"]["high"] == {"waited": 1, "served": 1, "mean_wait": 8.0, "p95_wait": 8.0,
                                     "max_wait": 8.0, "waiting_at_end": 0}
    assert q["by_class"]["low"]["mean_wait"] == 9.0
    assert q["by_class"]["normal"]["mean_wait"] == 12.0  # arrived at 3, started at 15
    assert q["by_project"]["a"]["served"] == 2 and q["by_project"]["b"]["max_wait"] == 8.0
    assert q["discipline"] == "priority"


def test_sjf_and_fifo_differ_as_the_live_disciplines_do() -> None:
    short = Workload("s", ("cpu",), np.array([0.0, 1.0, 2.0]), np.array([10.0, 101.0, 7.0]),
                     np.array([[4.0], [4.0], [4.0]]))

    def waits(discipline: str) -> tuple[float, float]:
        fleet = Fleet(["h0"], ("cpu",), np.array([[4.0]]))
        q = replay(fleet, short, make_policy("first-fit"), queue=discipline, check=True).queue["all"]
        return q["mean_wait"], q["max_wait"]

    # sjf: the 5 s job (arrived 2) before the 100 s one (arrived 1): waits 8, then 14
    assert waits("sjf") == (11.0, 14.0)
    # fifo: the 100 s job first (waits 9), the 5 s one after it (starts at 110: waits 108)
    assert waits("fifo") == (58.5, 108.0)


def test_a_job_larger_than_any_host_is_rejected_and_the_unserved_are_counted() -> None:
    wl = Workload("x", ("cpu",), np.array([0.0, 1.0, 2.0]), np.array([np.inf, 5.0, 5.0]),
                  np.array([[4.0], [8.0], [1.0]]))
    r = replay(Fleet(["h0"], ("cpu",), np.array([[4.0]])), wl, make_policy("first-fit"), queue="fifo")
    assert r.reasons == {"larger than any host": 1, "still queued at the end": 1}
    assert r.queue["all"]["waiting_at_end"] == 1


def test_unknown_discipline_is_refused() -> None:
    from poolvisor.domain.errors import InvalidInputError

    with pytest.raises(InvalidInputError):
        run("lottery")


def test_one_policy_core_for_the_live_queue_and_the_simulator(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Both serve their waiting requests through policies/queueing.order, and decide alike."""
    lite = open_services(f"sqlite:///{tmp_path / 'q.db'}")
    calls: list[tuple[str, list[int]]] = []
    real = queueing.order

    def spy(discipline: str, p: queueing.Pending, **kw: Any) -> np.ndarray:
        got = real(discipline, p, **kw)
        calls.append((discipline, [int(p.rank[i]) for i in got]))
        return got

    monkeypatch.setattr(queueing, "order", spy)
    run("priority")
    sim = list(calls)
    calls.clear()
    lite.catalog.create_pool("p")
    lite.hosts.create_host("h0", {"vcpu": 4, "memory_mib": 4096}, pool="p")
    for pr in ("a", "b"):
        lite.catalog.create_project(pr)
    lite.workloads.create_workload("a", "full", demand={"vcpu": 4}, pool="p", priority_class="system")
    for project, name, cls, cpu in (("a", "j1", "low", 2), ("b", "j2", "high", 2), ("a", "j3", "normal", 4)):
        lite.queue.enqueue(project, name, demand={"vcpu": cpu}, pool="p", priority_class=cls)
    lite.workloads.delete_workload("a", "full")
    assert lite.queue.drain().placed == ["b/j2", "a/j1"]  # the simulator's order at t=10 too
    lite.close()
    assert sim and calls and sim[0] == calls[0] == ("priority", [HIGH, NORMAL, LOW])
