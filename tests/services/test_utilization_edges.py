"""Utilization reads at the edges: any since/until/steps/interval gives a grid or a declared error.

A `since` after the last sample once left a non-positive step count that reached the resampler
(ValueError, a 500 through the API). The property tests feed the service and the resampler
arbitrary edge values and accept only a well-formed grid or a 4xx domain error.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.services import Services, open_services
from poolvisor.services.utilization import MAX_EPOCH, resample
from poolvisor.store.rows import UtilizationSampleRow

VMS = ["demo/a", "demo/b", "demo/c"]
EDGE_TIMES = [0.0, 1.0, 299.999, 300.0, 6000.0, 1_700_000_000.0, 1_704_067_200.0, MAX_EPOCH - 1, MAX_EPOCH]


@pytest.fixture(scope="module")
def usvc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    path: Path = tmp_path_factory.mktemp("util") / "u.db"
    s = open_services(f"sqlite:///{path}")
    s.catalog.create_pool("p")
    s.hosts.create_host("h0", {"vcpu": 64, "memory_mib": 65536}, pool="p")
    s.catalog.create_flavor("small", {"vcpu": 1, "memory_mib": 1024})
    s.catalog.create_project("demo")
    for ref in VMS:
        s.workloads.create_workload("demo", ref.split("/")[1], flavor="small")
    yield s
    s.close()


def _reset(svc: Services) -> None:
    svc.store.run(lambda s: s.execute(delete(UtilizationSampleRow)))


times = st.one_of(st.sampled_from(EDGE_TIMES), st.floats(0, 20_000), st.floats(0, MAX_EPOCH))
instants = st.one_of(
    st.none(), times, st.floats(-1e3, 5e9, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -1.0]),
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1)),
    st.just(datetime.now(UTC) + timedelta(days=30)),  # in the future
)
intervals = st.one_of(st.sampled_from([1.0, 60.0, 300.0, 604800.0, 0.0, -5.0, 0.5, 604801.0, math.nan]),
                      st.floats(1.0, 604800.0))
steps_ = st.one_of(st.none(), st.integers(-3, 5), st.integers(1, 200_000), st.just(10**12))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    samples=st.lists(st.tuples(st.sampled_from(VMS[:2]), times, st.floats(0, 1)), min_size=0, max_size=12),
    dup=st.booleans(),
    vms=st.lists(st.sampled_from([*VMS, "demo/ghost"]), min_size=1, max_size=3),
    interval=intervals, steps=steps_, since=instants, until=instants,
)
def test_history_gives_a_grid_or_a_declared_error(
        usvc: Services, samples: list[tuple[str, float, float]], dup: bool, vms: list[str], interval: float,
        steps: int | None, since: float | datetime | None, until: float | datetime | None) -> None:
    _reset(usvc)
    if samples:
        if dup:  # the same instant twice, possibly with other values
            samples = [*samples, (samples[0][0], samples[0][1], 1.0 - samples[0][2])]
        usvc.utilization.record_utilization(samples)
    try:
        h = usvc.utilization.utilization_history(vms, interval, steps=steps, since=since, until=until)
    except PoolvisorError as e:
        assert e.status_code < 500, e  # a declared domain error (422 / 404), never an internal one
        return
    u = h.util
    assert u.shape[0] == len(vms) and u.shape[1] >= 1
    assert steps is None or u.shape[1] == steps
    assert np.all(np.isfinite(u)) and h.interval_s == interval and h.start_s is not None
    for i, vm in enumerate(vms):  # means and carried values stay within the VM's own samples
        mine = [c for v, _t, c in samples if v == vm]
        if dup and samples[0][0] == vm:
            mine.append(1.0 - samples[0][2])
        assert mine, f"{vm} has no samples but got a grid"
        assert min(mine) - 1e-12 <= u[i].min() and u[i].max() <= max(mine) + 1e-12


def test_since_after_the_last_sample_is_a_clear_422(usvc: Services) -> None:
    _reset(usvc)
    usvc.utilization.record_utilization([("demo/a", 1_700_000_000, 0.5)])
    for since in (datetime(2024, 1, 1), datetime.now(UTC) + timedelta(days=365), 1_700_000_300.0):
        with pytest.raises(InvalidInputError, match="nothing recorded since .* latest sample of VM demo/a"):
            usvc.utilization.utilization_history(["demo/a"], since=since)
    # the same instant's bucket still works; a single sample gives one step
    h = usvc.utilization.utilization_history(["demo/a"], 300, since=1_700_000_000)
    assert h.util.tolist() == [[0.5]] and h.start_s == 1_700_000_000 - 1_700_000_000 % 300
    # an interval longer than the whole span: one bucket
    usvc.utilization.record_utilization([("demo/a", 1_700_000_010, 0.7)])
    h = usvc.utilization.utilization_history(["demo/a"], 604800)
    assert h.util.shape == (1, 1) and math.isclose(h.util[0, 0], 0.6)
    # until in the future: the last value carries forward to the bucket holding it
    h = usvc.utilization.utilization_history(["demo/a"], 86400, since=1_700_000_000,
                                             until=1_700_000_000 + 3 * 86400)
    assert h.util.shape == (1, 4) and np.allclose(h.util[0, 1:], 0.6)


def test_samples_at_a_bucket_boundary_are_never_dropped(usvc: Services) -> None:
    # floor(t / interval) says bucket k, yet t >= (k + 1) * interval in floats: the window's end
    # once excluded this (latest, only) sample, so the VM read as "nothing recorded"
    interval, t = 161.49135676635174, 2164907426.7557464
    k = math.floor(t / interval)
    assert t >= (k + 1) * interval  # the float quirk this test is about
    _reset(usvc)
    usvc.utilization.record_utilization([("demo/a", t, 0.25), ("demo/a", t - 3 * interval, 0.75)])
    h = usvc.utilization.utilization_history(["demo/a"], interval)
    assert h.util[0, -1] == 0.25 and h.util[0, 0] == 0.75
    assert usvc.utilization.utilization_history(["demo/a"], interval, steps=1).util.tolist() == [[0.25]]


@settings(max_examples=200, deadline=None)
@given(n_vms=st.integers(0, 4), steps=st.integers(-3, 40),
       interval=st.sampled_from([1.0, 0.0, -1.0, 7.5, math.inf]), n=st.integers(0, 30), clip=st.booleans(),
       seed=st.integers(0, 2**16))
def test_resample_never_raises_an_undeclared_error(n_vms: int, steps: int, interval: float, n: int,
                                                   clip: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    wl = rng.integers(0, max(n_vms, 1), n) if n_vms else np.zeros(0, dtype=np.int64)
    t = rng.uniform(-50, 400, wl.size)
    cpu = rng.random(wl.size)
    prior = np.where(rng.random(n_vms) < 0.5, rng.random(n_vms), np.nan)
    try:
        out = resample(wl, t, cpu, n_vms, 0.0, interval, steps, prior, clip=clip)
    except InvalidInputError:
        assert steps < 0 or not (math.isfinite(interval) and interval > 0)
        return
    assert out.shape == (n_vms, steps)
    # a row is either all NaN (nothing in or before the window) or fully filled, with its own values
    for i in range(n_vms):
        assert np.isnan(out[i]).all() or np.isfinite(out[i]).all()


def test_resample_rejects_rows_of_unknown_vms() -> None:
    with pytest.raises(InvalidInputError, match="rows of VMs"):
        resample(np.array([0, 3]), np.array([1.0, 2.0]), np.array([0.5, 0.5]), 2, 0.0, 1.0, 3,
                 np.full(2, np.nan))
