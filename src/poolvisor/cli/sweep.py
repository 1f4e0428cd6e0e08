"""`poolvisor sweep`: run a simulation grid on local cores or a Dask cluster; write CSV + plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from poolvisor.cli.errors import fail
from poolvisor.sweep.grid import parse_csv_list, parse_ints, policy_params
from poolvisor.sweep.runner import run_grid
from poolvisor.sweep.simulation import TASK_ONLY_KEYS, planetlab_task, resolve_policies, simulation_points

SUMMARY_COLUMNS = ("policy", "param", "trace", "seed", "energy_kwh", "migrations", "slav", "esv", "wall_s")


def _cell(v: Any) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def sweep(
    traces: Annotated[
        list[str], typer.Option("--traces", help="PlanetLab day directories (repeat, or comma-separate).")
    ],
    policies: Annotated[str, typer.Option(help="Comma-separated policies, e.g. thr-mmt,iqr-mmt,lr-mmt.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (one row per grid point).")],
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--params", help="Values for every policy ('0.7,0.8') or one ('thr-mmt=0.7,0.8'); repeatable."
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    compat: Annotated[str | None, typer.Option(help="'cloudsim' for the CloudSim-compatible mode.")] = None,
    hosts: Annotated[int | None, typer.Option(help="Hosts in the scenario (default 800).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: all cores).")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address (host:8786).")] = None,
    plots: Annotated[Path | None, typer.Option(help="Directory for comparison plots (PNG).")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML report.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as one JSON array.")] = False,
) -> None:
    """Run policies × parameters × traces × seeds and compare them."""
    from poolvisor.sweep.output import write_csv, write_plots  # matplotlib: load only when used
    from poolvisor.sweep.report import sweep_report

    if compat not in (None, "cloudsim", "default"):
        raise fail(f"--compat must be 'cloudsim' (or omitted), got {compat!r}")
    if workers is not None and dask is not None:
        raise fail("--workers and --dask are exclusive")
    dirs = [t for spec in traces for t in parse_csv_list(spec, "--traces")]
    pols, no_param = resolve_policies(parse_csv_list(policies, "--policies"))
    grid = policy_params(pols, params or [], no_param)
    points = simulation_points(dirs, grid, parse_ints(seeds, "--seeds"), compat, hosts)

    console = Console(stderr=True)
    with Progress(
        TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=as_json or not console.is_terminal,
    ) as bar:
        tid = bar.add_task("sweep", total=len(points))
        result = run_grid(
            planetlab_task, points, workers=workers, dask=dask,
            progress=lambda done, _total: bar.update(tid, completed=done),
        )
    rows = [{k: v for k, v in r.items() if k not in TASK_ONLY_KEYS} for r in result.rows]
    write_csv(rows, out)
    any_ok = len(result.errors) < len(rows)
    written = write_plots(rows, plots) if plots is not None and any_ok else []
    if report is not None and any_ok:
        sweep_report(rows, title=f"Sweep: {', '.join(pols)}").write(report)

    if as_json:
        typer.echo(json.dumps(rows))
    else:
        t = Table(title=f"sweep: {len(rows)} runs -> {out}")
        for c in SUMMARY_COLUMNS:
            t.add_column(c, justify="left" if c in ("policy", "trace") else "right")
        for r in rows:
            t.add_row(*(_cell(r.get(c)) for c in SUMMARY_COLUMNS))
        # not a terminal (pipe, CI log): a fixed wide console instead of Rich's 80 columns
        Console(width=None if sys.stdout.isatty() else 160).print(t)
        for p in written:
            typer.echo(f"plot: {p}")
        if report is not None and any_ok:
            typer.echo(f"report: {report}")
    if result.errors:
        first = result.errors[0]
        raise fail(
            f"{len(result.errors)} of {len(rows)} runs failed; first: "
            f"{first['policy']} {first['trace']} seed {first['seed']}: {first['error']}"
        )
