"""Recorded utilization: bulk samples in, a regular grid out; what-if straight from the store."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import func, select

from poolvisor.domain.errors import InvalidInputError, NotFoundError
from poolvisor.services import Services
from poolvisor.services.utilization import resample
from poolvisor.sim.whatif import UtilizationHistory, pool_from_services, simulate_whatif
from poolvisor.store.rows import UtilizationSampleRow
from small_pool import fill_small_pool


def _samples(s: Services) -> int:
    return int(s.store.run(lambda x: x.scalar(select(func.count()).select_from(UtilizationSampleRow)),
                           write=False))


def _three(s: Services) -> None:
    s.catalog.create_pool("p")
    s.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 16384}, pool="p")
    s.catalog.create_flavor("small", {"vcpu": 2, "memory_mib": 2048})
    s.catalog.create_project("demo")
    for n in ("a", "b", "c"):
        s.workloads.create_workload("demo", n, flavor="small")


def test_record_and_read_back_the_grid(svc: Services) -> None:
    _three(svc)
    # interval 60 s: bucket k = [60k, 60k+60); a has two samples in bucket 100, none in 102
    assert svc.utilization.record_utilization([
        ("demo/a", 6000, 0.2), (("demo", "a"), 6030.0, 0.4), ("demo/a", 6070, 0.5),
        ("demo/a", datetime.fromtimestamp(6200, UTC), 0.9),
        ("demo/b", 5990, 0.1), ("demo/b", 6130, 0.7),
    ]) == 6
    h = svc.utilization.utilization_history(["demo/a", "demo/b"], 60, steps=4)
    assert isinstance(h, UtilizationHistory) and h.interval_s == 60 and h.start_s == 6000
    # a: mean 0.3, 0.5, gap carries 0.5, 0.9; b: its 5990 sample carries in from before the window
    assert np.allclose(h.util, [[0.3, 0.5, 0.5, 0.9], [0.1, 0.1, 0.7, 0.7]], atol=1e-12)
    # no steps: from the earliest sample's bucket (99); a's first value carried back
    h = svc.utilization.utilization_history(["demo/b", "demo/a"], 60)
    assert h.start_s == 5940
    assert np.allclose(h.util, [[0.1, 0.1, 0.1, 0.7, 0.7], [0.3, 0.3, 0.5, 0.5, 0.9]], atol=1e-12)
    # since: a's last value before the window (0.4 at 6030) fills nothing since 6060 has a sample
    h = svc.utilization.utilization_history(["demo/a", "demo/b"], 60, since=datetime.fromtimestamp(6060, UTC))
    assert h.start_s == 6060 and np.allclose(h.util, [[0.5, 0.5, 0.9], [0.1, 0.7, 0.7]], atol=1e-12)
    h = svc.utilization.utilization_history(["demo/a", "demo/b"], 60, since=6061, until=6100)
    assert np.allclose(h.util, [[0.5], [0.1]], atol=1e-12)
    h = svc.utilization.utilization_history(["demo/a"], 120, steps=2)  # buckets [6000,6120) and [6120,6240)
    assert np.allclose(h.util, [[(0.2 + 0.4 + 0.5) / 3, 0.9]], atol=1e-12)


def test_bad_samples_write_nothing(svc: Services) -> None:
    _three(svc)
    good = ("demo/a", 6000, 0.5)
    bad: list[tuple[list[object], type[Exception], str]] = [
        ([good, ("demo/ghost", 6000, 0.5)], NotFoundError, "ghost"),
        ([good, ("other/a", 6000, 0.5)], NotFoundError, "other"),
        ([good, ("demo/a", 6000, 1.5)], InvalidInputError, "0..1"),
        ([good, ("demo/a", 6000, -0.1)], InvalidInputError, "0..1"),
        ([good, ("demo/a", 6000, float("nan"))], InvalidInputError, "0..1"),
        ([good, ("demo/a", 6000, float("inf"))], InvalidInputError, "0..1"),
        ([good, ("demo/a", 6000, True)], InvalidInputError, "number"),
        ([good, ("demo/a", 6000, "0.5")], InvalidInputError, "number"),
        ([good, ("demo/a", float("nan"), 0.5)], InvalidInputError, "1970"),
        ([good, ("demo/a", 1.7e12, 0.5)], InvalidInputError, "2100"),  # milliseconds, not seconds
        ([good, ("demo/a", "2026-01-01", 0.5)], InvalidInputError, "datetime"),
        ([good, ("a", 6000, 0.5)], InvalidInputError, "project/name"),
        ([good, ("demo/a", 6000)], InvalidInputError, "expected"),
        ([], InvalidInputError, "1.."),
    ]
    for samples, err, msg in bad:
        with pytest.raises(err, match=msg):
            svc.utilization.record_utilization(samples)  # type: ignore[arg-type]
    assert _samples(svc) == 0


def test_history_errors(svc: Services) -> None:
    _three(svc)
    svc.utilization.record_utilization([("demo/a", 6000, 0.5), ("demo/b", 500_000, 0.5)])
    with pytest.raises(InvalidInputError, match="no utilization recorded for VM demo/c"):
        svc.utilization.utilization_history(["demo/a", "demo/c"])
    with pytest.raises(InvalidInputError, match="no utilization recorded for VM demo/b up to"):
        svc.utilization.utilization_history(["demo/a", "demo/b"], until=7000)
    with pytest.raises(NotFoundError, match="ghost"):
        svc.utilization.utilization_history(["demo/ghost"])
    with pytest.raises(InvalidInputError, match="not both"):
        svc.utilization.utilization_history(["demo/a"], steps=3, since=1000)
    for kw in ({"interval_s": 0}, {"interval_s": float("nan")}, {"steps": 0}, {"since": -5.0}):
        with pytest.raises(InvalidInputError):
            svc.utilization.utilization_history(["demo/a"], **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="spans"):
        svc.utilization.utilization_history(["demo/a", "demo/b"], 1, since=0)
    with pytest.raises(InvalidInputError, match="duplicate"):
        svc.utilization.utilization_history(["demo/a", "demo/a"])


def test_samples_go_with_their_workload(svc: Services) -> None:
    _three(svc)
    svc.utilization.record_utilization([("demo/a", 6000, 0.5), ("demo/b", 6000, 0.5)])
    svc.workloads.delete_workload("demo", "a")
    assert _samples(svc) == 1


def test_resample_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(5)
    v, steps, interval, start = 7, 40, 30.0, 3000.0
    n = 600
    wl = rng.integers(0, v, n)
    t = start + rng.uniform(-100, steps * interval + 100, n)
    t[wl == 3] = start + 5 * interval + 1  # VM 3: one bucket only
    t[wl == 4] = start - 50  # VM 4: only before the window
    cpu = rng.random(n)
    prior = np.full(v, np.nan)
    prior[[1, 4]] = [0.25, 0.75]
    got = resample(wl, t, cpu, v, start, interval, steps, prior)
    for i in range(v):
        last = prior[i]
        row = []
        for k in range(steps):
            m = (wl == i) & (t >= start + k * interval) & (t < start + (k + 1) * interval)
            last = cpu[m].mean() if m.any() else last
            row.append(last)
        vals = np.array(row)
        if np.isnan(vals[0]):
            vals[np.isnan(vals)] = vals[~np.isnan(vals)][0]
        assert np.allclose(got[i], vals), i
    assert (got[4] == 0.75).all() and (got[3] == got[3][0]).all()


def test_whatif_from_the_store(svc: Services) -> None:
    fill_small_pool(svc)
    pool = pool_from_services(svc, "p")
    rng = np.random.default_rng(3)
    util = rng.uniform(0.05, 0.3, (len(pool.vms), 24))
    t0 = 1_800_000_000.0
    svc.utilization.record_utilization([(vm, t0 + 300 * k + 7, float(util[i, k]))
                                        for i, vm in enumerate(pool.vms) for k in range(24)])
    hist = svc.utilization.utilization_history(pool.vms, 300)
    assert hist.start_s == t0 and np.array_equal(hist.util, util)
    base = simulate_whatif(pool, hist, "dvfs")
    thr = simulate_whatif(pool, hist, "thr-mmt", 0.8)
    assert base.metrics["migrations"] == 0 and thr.metrics["vms"] == 8
    assert thr.metrics["energy_kwh"] < base.metrics["energy_kwh"]
    same = simulate_whatif(pool, UtilizationHistory(util, 300.0), "thr-mmt", 0.8)
    assert {k: v for k, v in same.metrics.items() if k != "wall_s"} == \
        {k: v for k, v in thr.metrics.items() if k != "wall_s"}
