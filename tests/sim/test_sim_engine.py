"""Simulator engine: trace interpolation, CPU sharing under contention and migration, whole runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_run import run_cli
from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.engine import PolicySpec, Simulator, allocate, utilization_at
from poolvisor.sim.planetlab import simulate_planetlab
from poolvisor.sim.scenario import cloudsim_planetlab


def test_utilization_interpolation() -> None:
    util = np.array([[0.0, 0.3, 0.6, 0.6]])
    assert utilization_at(util, 300.0, 300.0)[0] == 0.3
    assert utilization_at(util, 300.1, 300.0)[0] == pytest.approx(0.3 + 0.3 * 0.1 / 300)
    assert utilization_at(util, 450.0, 300.0)[0] == pytest.approx(0.45)


def _alloc(req, host_of, in_mig=None, flights=()):  # type: ignore[no-untyped-def]
    req = np.asarray(req, dtype=float)
    v = req.size
    f = np.asarray(flights, dtype=np.int64).reshape(-1, 3)
    return allocate(
        req,
        np.asarray(host_of),
        np.arange(v),
        np.zeros(v, bool) if in_mig is None else np.asarray(in_mig),
        f[:, 0],
        f[:, 1],
        f[:, 2],
        np.array([1000.0, 1000.0]),
        np.array([2000.0, 2000.0]),
    )


def test_cpu_sharing_fits_and_oversubscription() -> None:
    a = _alloc([800, 900, 1200, 1500, 500], [0, 0, 1, 1, 1])
    assert a.vm_alloc[:2].tolist() == [800, 900]
    # host 1: requests capped at one PE (1000, 1000, 500) exceed 2000 -> scaled by 0.8 and floored
    assert a.vm_alloc[2:].tolist() == [800, 800, 400]
    assert a.util_mips.tolist() == [1700, 2000]
    assert a.req_mips.tolist() == [1700, 3200]  # requested counts the uncapped demand


def test_migration_degradation_and_target_share() -> None:
    # VM 0 migrates from host 0 to host 1 (flight key 10 appends it to host 1's list)
    a = _alloc([600, 300], [0, 1], in_mig=[True, False], flights=[(0, 1, 10)])
    assert a.vm_alloc[0] == pytest.approx(540)  # 90 % on the source
    assert a.util_mips[0] == pytest.approx(600)  # the source still counts the full demand
    assert a.util_mips[1] == pytest.approx(300 + 60)  # the target carries 10 %
    assert a.req_mips[1] == pytest.approx(900)  # ... but the full request: SLA violation while migrating in


def _trace(tmp_path: Path, n: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = tmp_path / "day"
    d.mkdir()
    base = rng.integers(0, 60, size=(n, 1))
    vals = np.clip(base + rng.integers(-15, 30, size=(n, 288)), 0, 100)
    for i in range(n):
        (d / f"vm {i:03d}").write_text("\n".join(str(x) for x in vals[i]) + "\n")
    return d


def test_npa_and_dvfs(tmp_path: Path) -> None:
    d = _trace(tmp_path)
    npa = simulate_planetlab(d, "npa", None, "cloudsim", hosts=20)
    # every host at full power from 0 to the last epoch (0.1 + 287 * 300 s)
    expect = (10 * 117 + 10 * 135) * 86100.1 / 3.6e6
    assert npa.metrics["energy_kwh"] == pytest.approx(expect)
    dvfs = simulate_planetlab(d, "dvfs", None, "cloudsim", hosts=20)
    assert dvfs.metrics["migrations"] == 0
    assert 0 < dvfs.metrics["energy_kwh"] < npa.metrics["energy_kwh"]
    assert dvfs.metrics["slatah"] == 0 and dvfs.metrics["pdm"] == 0


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trace(tmp_path_factory.mktemp("pl"))


CASES = [
    (p, "cloudsim")
    for p in (
        "thr-mmt-0.8",
        "iqr-mmt-1.5",
        "mad-mmt-2.5",
        "lr-mmt-1.2",
        "lrr-mmt-1.2",
        "thr-mu-0.8",
        "thr-rs-0.8",
        "thr-mc-0.8",
    )
]
CASES += [(p, None) for p in ("thr-mmt-0.8", "mad-mmt-2.5", "lr-mmt-1.2", "lrr-mmt-1.2", "adaptive")]


@pytest.mark.parametrize(("policy", "compat"), CASES)
def test_dynamic_policies_consolidate(day: Path, policy: str, compat: str | None) -> None:
    d = day
    dvfs = simulate_planetlab(d, "dvfs", None, compat, hosts=20)
    res = simulate_planetlab(d, policy, None, compat, hosts=20, seed=1)
    m = res.metrics
    assert m["migrations"] > 0 and sum(res.rules.values()) == m["migrations"]
    assert m["energy_kwh"] < dvfs.metrics["energy_kwh"]
    assert 0 < m["slatah"] < 1 and 0 < m["pdm"] < 1
    assert m["slav"] == pytest.approx(m["slatah"] * m["pdm"])
    assert m["esv"] == pytest.approx(m["energy_kwh"] * m["slav"])
    assert res.time_s.size == 287 and res.active_hosts.max() <= 20
    assert int(res.migrations.sum()) <= m["migrations"]
    json.dumps(res.to_dict())


def test_rs_is_reproducible(tmp_path: Path) -> None:
    d = _trace(tmp_path)
    a = simulate_planetlab(d, "thr-rs", 0.8, "cloudsim", hosts=20, seed=5).metrics
    b = simulate_planetlab(d, "thr-rs", 0.8, "cloudsim", hosts=20, seed=5).metrics
    assert {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in b.items() if k != "wall_s"}


def test_policy_parsing_and_errors(tmp_path: Path) -> None:
    assert PolicySpec.parse("THR-MMT-0.7", None).param == 0.7
    assert PolicySpec.parse("lr-mmt", None).param == 1.2
    for bad in ("foo", "thr-xyz", "thr-mmt-abc"):
        with pytest.raises(InvalidInputError):
            PolicySpec.parse(bad, None)
    with pytest.raises(InvalidInputError, match="compat"):
        simulate_planetlab(_trace(tmp_path), "dvfs", None, "cloudsim7")


def test_vm_that_fits_nowhere(tmp_path: Path) -> None:
    d = _trace(tmp_path, n=8)
    sc = cloudsim_planetlab(np.full((8, 288), 50.0), hosts=1)
    with pytest.raises(InvalidInputError, match="fits on no host"):
        Simulator(sc, PolicySpec.parse("dvfs", None)).run()
    assert d.exists()


def test_cli_json_table_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _trace(tmp_path)
    assert (
        run_cli(
            [
                "simulate",
                "planetlab",
                str(d),
                "--policy",
                "thr-mmt",
                "--param",
                "0.8",
                "--compat",
                "cloudsim",
                "--hosts",
                "20",
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    for k in ("energy_kwh", "migrations", "slatah", "pdm", "slav", "esv", "hosts", "vms", "wall_s"):
        assert k in doc
    assert doc["hosts"] == 20 and doc["vms"] == 24 and doc["compat"] == "cloudsim"
    report = tmp_path / "r.html"
    assert (
        run_cli(
            ["simulate", "planetlab", str(d), "--policy", "lr-mmt", "--hosts", "20", "--report", str(report)]
        )
        == 0
    )
    assert "SLATAH" in capsys.readouterr().out
    html = report.read_text()
    assert html.count("data:image/png;base64") >= 3  # active hosts, power, SLA over time
    assert run_cli(["simulate", "planetlab", str(d), "--policy", "nope"]) == 1
    assert "unknown policy" in capsys.readouterr().err
    # the table and the JSON paths take the same options: an underload limit of 0 tries no host
    base = ["simulate", "planetlab", str(d), "--policy", "thr-mmt", "--hosts", "20"]
    assert run_cli([*base, "--json"]) == 0
    free = json.loads(capsys.readouterr().out)
    assert run_cli([*base, "--underload-limit", "0", "--json"]) == 0
    capped = json.loads(capsys.readouterr().out)
    assert free["rules"].get("underload", 0) > 0 and "underload" not in capped["rules"]
    assert run_cli([*base, "--underload-limit", "0", "--check-ram"]) == 0
    assert "underload" not in capsys.readouterr().out.split("migrations by rule")[-1]
    assert run_cli([*base, "--underload-limit", "0", "--compat", "cloudsim"]) == 1
    assert "underload limit" in capsys.readouterr().err
    (d / "vm 003").write_text("1\n2\nthree\n")
    assert run_cli(["simulate", "planetlab", str(d), "--policy", "dvfs"]) == 1
    assert "vm 003:3:" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["thr-mmt-0.8", "lr-mmt-1.2", "iqr-mmt-1.5", "mad-mmt-2.5", "adaptive"])
@pytest.mark.parametrize("compat", ["cloudsim", None])
def test_compiled_and_numpy_batches_agree(
    day: Path, policy: str, compat: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poolvisor.policies.balancing import kernels

    if not kernels.available():
        pytest.skip("numba not installed (optional 'fast' extra): only the numpy path exists")
    jit = simulate_planetlab(day, policy, None, compat, hosts=20, record=True)
    monkeypatch.setattr(kernels, "available", lambda: False)
    plain = simulate_planetlab(day, policy, None, compat, hosts=20, record=True)
    assert jit.debug["migrations"] == plain.debug["migrations"]
    assert jit.metrics["energy_kwh"] == pytest.approx(plain.metrics["energy_kwh"], rel=1e-12)


def test_cloudsim_removes_vms_that_request_nothing() -> None:
    """CloudSim treats a VM whose request is 0 at an update as finished and drops it for good."""
    util = np.full((2, 288), 50.0)
    util[0, 3:5] = 0.0  # VM 0 requests exactly 0 at t = 900.1 (both surrounding samples are 0)
    sc = cloudsim_planetlab(util, hosts=4)
    compat = Simulator(sc, PolicySpec.parse("dvfs", None), compat=True).run()
    fixed = Simulator(sc, PolicySpec.parse("dvfs", None), compat=False).run()
    # both VMs share one G5 host (first fit); same power until VM 0 is dropped at 900.1 s
    assert np.array_equal(compat.power_w[:2], fixed.power_w[:2])
    assert np.all(compat.power_w[3:] < fixed.power_w[3:])  # in the corrected mode VM 0 comes back at 50 %
    assert compat.metrics["energy_kwh"] < fixed.metrics["energy_kwh"]


def test_default_policy_is_adaptive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _trace(tmp_path)
    assert run_cli(["simulate", "planetlab", str(d), "--hosts", "20", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["policy"] == "adaptive" and doc["param"] == 1.2 and doc["compat"] is None
    named = simulate_planetlab(d, "adaptive", 1.2, None, hosts=20).metrics
    assert doc["migrations"] == named["migrations"] and doc["energy_kwh"] == named["energy_kwh"]
    assert run_cli(["simulate", "planetlab", str(d), "--policy", "adaptive", "--param", "0.9"]) == 1
    assert "safety parameter must be >= 1" in capsys.readouterr().err
