"""What-if runs as tasks (sim/whatif_task.py): validation at submission, the stored result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError, NotFoundError
from poolvisor.services import Services, open_services
from poolvisor.sim.whatif import history_from_store, pool_from_services, simulate_whatif
from poolvisor.sim.whatif_task import MAX_POINTS, WHATIF, WhatifRuns, _bins, register
from small_pool import fill_small_pool


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'w.db'}")
    fill_small_pool(s, hosts=4, vms=8)
    rng = np.random.default_rng(3)
    t0 = 1_700_000_000.0
    s.utilization.record_utilization([(f"demo/w{i}", t0 + 300 * k, float(rng.uniform(0.05, 0.9)))
                                      for i in range(8) for k in range(700)])
    register(s)
    yield s
    s.close()


def run(svc: Services, task_id: int) -> None:
    assert svc.tasks.claim_tasks(10) == [task_id]
    svc.tasks.run_task(task_id)


def test_bad_runs_are_refused_at_submission(svc: Services) -> None:
    runs = WhatifRuns(svc)
    with pytest.raises(NotFoundError):
        runs.submit("nope", ["lr-mmt"], steps=10, interval_s=300)
    for policies, steps, interval in ((["nope-x"], 10, 300), ([], 10, 300), (["lr-mmt"] * 5, 10, 300),
                                      (["lr-mmt"], 1, 300), (["lr-mmt"], 3000, 300), (["lr-mmt"], 10, 0)):
        with pytest.raises(InvalidInputError):
            runs.submit("p", policies, steps=steps, interval_s=interval)
    assert svc.tasks.list_tasks() == []  # nothing queued


def test_a_long_run_is_stored_binned_and_matches_the_direct_replay(svc: Services) -> None:
    t = WhatifRuns(svc).submit("p", ["thr-mmt-0.6"], steps=600, interval_s=300)
    assert (t.kind, t.state, t.project, t.subject) == (WHATIF, "queued", None, "pool/p")
    run(svc, t.id)
    done = svc.tasks.get_task(t.id)
    assert done.state == "succeeded", done.error
    assert done.progress == 1.0 and len(done.entries) >= 4  # a note per replayed run
    res = done.result
    assert res is not None and (res["vms"], res["hosts"], res["steps"]) == (8, 4, 600)
    # the same replay run directly (what `poolvisor whatif` prints)
    snap = pool_from_services(svc, "p")
    hist, missing = history_from_store(svc, snap.vms, 300.0, steps=600)
    direct = simulate_whatif(snap, hist, "thr-mmt-0.6")
    stored = res["runs"][1]
    assert [r["label"] for r in res["runs"]] == ["as-is", direct.label]
    assert stored["metrics"]["energy_kwh"] == pytest.approx(direct.metrics["energy_kwh"])
    assert stored["metrics"]["migrations"] == direct.metrics["migrations"] > 0
    series = stored["series"]
    assert all(len(v) == len(series["time_s"]) <= MAX_POINTS for v in series.values())
    assert sum(series["migrations"]) == int(direct.migrations.sum())  # binned by sum: none lost
    assert max(series["active_hosts"]) <= direct.active_hosts.max()
    assert series["time_s"][0] == pytest.approx(float(hist.start_s or 0) + float(direct.time_s[0]))
    assert missing == [] and res["without_history"] == 0


def test_bins() -> None:
    a = np.arange(10, dtype=float)
    assert _bins(a, 20) == a.tolist()
    assert _bins(a, 5) == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert _bins(a, 4, total=True) == [3.0, 12.0, 21.0, 9.0]  # the last bin is partial
    assert _bins(a, 4) == [1.0, 4.0, 7.0, 9.0]
