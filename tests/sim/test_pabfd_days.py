"""The numpy PABFD definition and the compiled kernel give the same shipped PlanetLab days, bit for
bit: same initial placement, same migrations (time, VM, source, target), same energy frames and
metrics: every shipped day in the CloudSim-compatible mode, and the first day in the default mode
(whose numpy IQR/MAD runs take ~15 s each). Marked slow (the numpy path replays whole days); the
default run compares the first hour of 20110303 at full scale, every policy in both modes."""

from __future__ import annotations

import pytest
from planetlab_slice import run_slice

from conftest import require_shared_data
from poolvisor.policies.balancing import kernels
from poolvisor.sim.planetlab import simulate_planetlab

DAYS = ("20110303", "20110306", "20110309")
POLICIES = ("thr-mmt-0.8", "iqr-mmt-1.5", "mad-mmt-2.5", "lr-mmt-1.2")
CASES = [(day, p, "cloudsim") for day in DAYS for p in POLICIES] + [(DAYS[0], p, None) for p in POLICIES]


@pytest.mark.slow
@pytest.mark.parametrize(("day", "policy", "compat"), CASES)
def test_numpy_definition_and_compiled_kernel_replay_the_same_day(
    day: str, policy: str, compat: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not kernels.available():
        pytest.skip("numba not installed (optional 'fast' extra): only the numpy definition exists")
    path = require_shared_data("planetlab", day)
    compiled = simulate_planetlab(path, policy, None, compat, record=True)
    monkeypatch.setattr(kernels, "available", lambda: False)
    numpy = simulate_planetlab(path, policy, None, compat, record=True)
    assert compiled.metrics["migrations"] > 1000
    assert (compiled.debug["initial_hosts"] == numpy.debug["initial_hosts"]).all()
    assert compiled.debug["migrations"] == numpy.debug["migrations"]
    assert compiled.debug["energy_frames"] == numpy.debug["energy_frames"]
    compiled.metrics.pop("wall_s"), numpy.metrics.pop("wall_s")
    assert compiled.metrics == numpy.metrics


@pytest.mark.parametrize("compat", ["cloudsim", None])
@pytest.mark.parametrize("policy", POLICIES)
def test_numpy_definition_and_compiled_kernel_replay_the_same_first_hour(
    policy: str, compat: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounded sibling (run by default): the first hour of 20110303 at full scale (800 hosts)."""
    if not kernels.available():
        pytest.skip("numba not installed (optional 'fast' extra): only the numpy definition exists")
    name, _, par = policy.rpartition("-")
    compiled, cres = run_slice(DAYS[0], 1.0, name, float(par), compat=compat == "cloudsim", record=True)
    monkeypatch.setattr(kernels, "available", lambda: False)
    numpy, nres = run_slice(DAYS[0], 1.0, name, float(par), compat=compat == "cloudsim", record=True)
    assert len(compiled.trace_migrations) > 500
    assert (compiled.initial_hosts == numpy.initial_hosts).all()
    assert compiled.trace_migrations == numpy.trace_migrations
    assert compiled.trace_frames == numpy.trace_frames
    cres.metrics.pop("wall_s"), nres.metrics.pop("wall_s")
    assert cres.metrics == nres.metrics
