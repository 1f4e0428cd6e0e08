"""The grid runner: one row per point, in grid order, locally (inline and processes) and on Dask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sweep.grid import expand_grid, parse_floats, policy_params
from poolvisor.sweep.output import read_csv, write_csv, write_plots
from poolvisor.sweep.report import sweep_report
from poolvisor.sweep.runner import run_grid


def quadratic_task(point: dict[str, Any]) -> dict[str, Any]:
    """A deterministic picklable task: a 'metric' that depends on every axis."""
    a, b, seed = point["a"], point["b"], point["seed"]
    if a < 0:
        raise InvalidInputError(f"a must be >= 0, got {a}")
    return {"energy_kwh": a * a + b + 0.01 * seed, "migrations": int(10 * a + seed)}


def _expected(p: dict[str, Any]) -> float:
    return float(p["a"] ** 2 + p["b"] + 0.01 * p["seed"])


GRID = expand_grid({"a": [0.0, 1.0, 2.0], "b": [10.0, 20.0], "seed": [0, 1]})


def test_expand_grid_order_and_size() -> None:
    assert len(GRID) == 12
    assert GRID[0] == {"a": 0.0, "b": 10.0, "seed": 0}
    assert GRID[1] == {"a": 0.0, "b": 10.0, "seed": 1}
    assert GRID[-1] == {"a": 2.0, "b": 20.0, "seed": 1}
    with pytest.raises(InvalidInputError):
        expand_grid({"a": [1], "b": []})


def test_policy_params_shared_and_specific() -> None:
    got = policy_params(["thr-mmt", "iqr-mmt", "npa"], ["0.7,0.8", "iqr-mmt=1.5,2"], frozenset({"npa"}))
    assert got == {"thr-mmt": [0.7, 0.8], "iqr-mmt": [1.5, 2.0], "npa": [None]}
    assert policy_params(["lr-mmt"], []) == {"lr-mmt": [None]}
    with pytest.raises(InvalidInputError, match="not in --policies"):
        policy_params(["thr-mmt"], ["mad-mmt=2.5"])
    with pytest.raises(InvalidInputError, match="takes no parameter"):
        policy_params(["npa"], ["npa=1"], frozenset({"npa"}))
    with pytest.raises(InvalidInputError, match="not a number"):
        parse_floats("0.8,x", "--params")


@pytest.mark.parametrize("workers", [1, 2])
def test_local_run_has_one_row_per_point_in_order(workers: int) -> None:
    seen: list[int] = []
    bad = {"a": -1.0, "b": 0.0, "seed": 0}  # a failing point is recorded, not fatal
    points = [*GRID[:6], bad, *GRID[6:]]
    res = run_grid(quadratic_task, points, workers=workers, progress=lambda d, t: seen.append(d))
    assert len(res.rows) == len(points)
    assert res.errors == [res.rows[6]]
    assert res.rows[6]["error"] == "InvalidInputError: a must be >= 0, got -1.0"
    assert "energy_kwh" not in res.rows[6]
    for p, r in zip(GRID, res.rows[:6] + res.rows[7:], strict=True):
        assert {k: r[k] for k in p} == p
        assert r["energy_kwh"] == pytest.approx(_expected(p))
        assert r["error"] == ""
    assert sorted(seen) == list(range(1, len(points) + 1))


def test_dask_local_cluster_matches_local(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    # in-process cluster (threads, inproc:// transport): no sockets, no child processes to leak
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        res = run_grid(quadratic_task, GRID, dask=client)
        # by address (what --dask passes): the runner opens and closes its own client
        by_address = run_grid(quadratic_task, GRID[:3], dask=cluster.scheduler_address)
    local = run_grid(quadratic_task, GRID, workers=1)
    assert res.rows == local.rows
    assert by_address.rows == local.rows[:3]
    # CSV: header + one line per grid point, values round-trip
    out = write_csv(res.rows, tmp_path / "r.csv")
    back = read_csv(out)
    assert len(back) == len(GRID)
    assert [r["energy_kwh"] for r in back] == pytest.approx([_expected(p) for p in GRID])
    assert all(r["error"] is None for r in back)


def test_comparison_plots_are_pngs(tmp_path: Path) -> None:
    rows = [
        {"policy": pol, "param": prm, "trace": tr, "seed": s,
         "energy_kwh": 100 + 10 * i + s, "slav": 1e-5 * (i + 1), "error": ""}
        for i, (pol, prm) in enumerate([("thr-mmt", 0.8), ("iqr-mmt", 1.5), ("npa", None)])
        for tr in ("d1", "d2") for s in (0, 1)
    ]
    rows.append({"policy": "lr-mmt", "param": 1.2, "trace": "d1", "seed": 0, "error": "boom"})
    written = write_plots(rows, tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == ["energy_kwh.png", "energy_vs_slav.png", "slav.png"]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the sweep report embeds the same charts and lists the failed run
    html = sweep_report(rows, title="t").to_html()
    assert html.count("data:image/png;base64,") == 3
    assert "boom" in html and "thr-mmt" in html
