"""A tiny real sweep: the simulator on a small synthetic PlanetLab day, locally, on Dask and via the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app
from poolvisor.sim.planetlab import simulate_planetlab
from poolvisor.sweep.runner import run_grid
from poolvisor.sweep.simulation import planetlab_task, simulation_points
from poolvisor.traces.synthetic import resample_shapes, write_planetlab_dir

HOSTS = 24


@pytest.fixture(scope="module")
def tiny_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 VMs with a day-long sine-like load plus spikes (no shared data needed)."""
    t = np.arange(288)
    rng = np.random.default_rng(5)
    wave = 30 + 25 * np.sin(2 * np.pi * (t[None, :] / 288 + rng.random((8, 1))))
    shapes = np.clip(wave + rng.normal(0, 8, (8, 288)), 0, 100)
    util = resample_shapes(shapes, 30, seed=1, integer=True)
    return write_planetlab_dir(util, tmp_path_factory.mktemp("tiny") / "day1")


def _grid(day: Path) -> list[dict[str, object]]:
    return simulation_points([day], {"thr-mmt": [0.8], "thr-rs": [0.8], "dvfs": [None]}, [0, 1], hosts=HOSTS)


def test_local_sweep_matches_direct_runs(tiny_day: Path) -> None:
    points = _grid(tiny_day)
    assert len(points) == 3 * 2
    res = run_grid(planetlab_task, points, workers=2)
    assert not res.errors, res.errors
    assert len(res.rows) == len(points)
    for p, row in zip(points, res.rows, strict=True):
        direct = simulate_planetlab(tiny_day, p["policy"], None, None, seed=p["seed"], hosts=HOSTS)
        assert row["energy_kwh"] == pytest.approx(direct.metrics["energy_kwh"])
        assert row["migrations"] == direct.metrics["migrations"]
        assert row["hosts"] == HOSTS and row["vms"] == 30
    by = {(r["policy"], r["seed"]): r for r in res.rows}
    assert by[("dvfs", 0)]["migrations"] == 0
    assert by[("thr-mmt", 0)]["migrations"] > 0
    # consolidation saves energy over the never-migrating DVFS baseline
    assert by[("thr-mmt", 0)]["energy_kwh"] < by[("dvfs", 0)]["energy_kwh"]


def test_dask_sweep_matches_local(tiny_day: Path) -> None:
    distributed = pytest.importorskip("distributed")
    points = _grid(tiny_day)[:4]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as c,
        distributed.Client(c) as client,
    ):
        remote = run_grid(planetlab_task, points, dask=client)
    local = run_grid(planetlab_task, points, workers=1)
    strip = ("wall_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in remote.rows] == [
        {k: v for k, v in r.items() if k not in strip} for r in local.rows
    ]


def test_cli_writes_csv_plots_and_report(
    tiny_day: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res.csv"
    argv = [
        "sweep", "--traces", str(tiny_day), "--policies", "thr-mmt,iqr-mmt", "--params", "thr-mmt=0.7,0.9",
        "--seeds", "0", "--hosts", str(HOSTS), "--workers", "1", "--out", str(out),
        "--plots", str(tmp_path / "plots"), "--report", str(tmp_path / "sweep.html"), "--json",
    ]
    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: app(argv, standalone_mode=True))
    assert e.value.code == 0, capsys.readouterr().err
    with out.open() as f:
        rows = list(csv.DictReader(f))
    # thr-mmt x {0.7, 0.9} + iqr-mmt x {its default, recorded}: one row per grid point
    got = [(r["policy"], r["param"]) for r in rows]
    assert got == [("thr-mmt", "0.7"), ("thr-mmt", "0.9"), ("iqr-mmt", "1.5")]
    assert all(r["error"] == "" and float(r["energy_kwh"]) > 0 for r in rows)
    assert "trace_dir" not in rows[0] and rows[0]["trace"] == "day1"
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "energy_kwh.png" in pngs and "energy_vs_slav.png" in pngs
    html = (tmp_path / "sweep.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
