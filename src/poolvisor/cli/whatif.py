"""`poolvisor whatif`: replay the live pool's recorded utilization under other policies."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from poolvisor.cli.errors import fail
from poolvisor.sim.result import SimResult

SHOWN = ("energy_kwh", "migrations", "slatah", "pdm", "slav", "esv", "host_shutdowns")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def whatif(
    history: Path = typer.Option(
        ..., "--history", help=".npz: 'vms' (names), 'util' (VMs x steps, 0..1), optional 'interval_s'"
    ),
    policies: str = typer.Option("lr-mmt", "--policies", help="Comma-separated, e.g. thr-mmt,lr-mmt"),
    param: float | None = typer.Option(None, "--param", help="Parameter for every policy (default: its own)"),
    pool: str | None = typer.Option(None, "--pool", help="Pool to replay (default: every host)"),
    db: str | None = typer.Option(None, "--db", help="Database URL or SQLite file (default: as `serve`)"),
    fresh: bool = typer.Option(
        False, "--fresh", help="Let each policy place the VMs too (default: start from the current placement)"
    ),
    seed: int = typer.Option(0, "--seed"),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML comparison"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON array (baseline first)."),
) -> None:
    """Compare the pool as it runs (no migrations) with consolidation policies on its own history."""
    from poolvisor.services import open_services
    from poolvisor.services.whatif import load_history, pool_from_services, simulate_whatif
    from poolvisor.sweep.grid import parse_csv_list

    if not history.is_file():
        raise fail(f"history file not found: {history}")
    svc = open_services(db)
    try:
        snap = pool_from_services(svc, pool)
    finally:
        svc.close()
    hist = load_history(history, snap.vms)
    runs: list[SimResult] = [simulate_whatif(snap, hist, "dvfs", seed=seed, keep_placement=not fresh)]
    runs[0].policy = "as-is" if not fresh else "first-fit"
    for p in parse_csv_list(policies, "--policies"):
        runs.append(simulate_whatif(snap, hist, p, param, seed=seed, keep_placement=not fresh))
    written = None
    if report is not None:
        from poolvisor.sim.report import write_simulation_report

        written = write_simulation_report(runs, report, title=f"What-if on pool {pool or '(all hosts)'}")
    if json_out:
        typer.echo(json.dumps([r.to_dict(series=False) for r in runs]))
        return
    t = Table(title=f"what-if: {len(snap.vms)} VMs on {len(snap.hosts)} hosts, "
              f"{hist.util.shape[1]} steps of {hist.interval_s:g} s")
    t.add_column("policy")
    for k in SHOWN:
        t.add_column(k, justify="right")
    for r in runs:
        t.add_row(r.label, *(_cell(r.metrics.get(k, "")) for k in SHOWN))
    Console(width=None if sys.stdout.isatty() else 160).print(t)
    if written is not None:
        typer.echo(f"report: {written}")
