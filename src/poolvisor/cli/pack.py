"""`poolvisor pack FILE.vbp`: pack one vector bin packing instance and print the result."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from poolvisor.cli.errors import fail
from poolvisor.cli.parse import number
from poolvisor.policies.packing.bounds import lower_bound
from poolvisor.policies.packing.feasibility import check_assignment
from poolvisor.policies.packing.problem import as_problem
from poolvisor.policies.packing.registry import HEURISTICS, algorithms, solve
from poolvisor.traces.vbp import read_vbp


def pack(
    file: Path = typer.Argument(..., help="instance in VPSolver .vbp format"),
    algo: str = typer.Option("best", "--algo", help="algorithm name, 'best', or 'all' (compare every one)"),
    time_limit: float = typer.Option(1.0, "--time-limit", help="seconds for improvement stages",
        parser=number),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    assignment: bool = typer.Option(False, "--assignment", help="include the item -> bin assignment"),
    seed: int = typer.Option(0, "--seed", help="random seed of the local search"),
) -> None:
    """Pack FILE.vbp into as few bins as possible (assignment checked feasible before printing)."""
    if time_limit < 0:
        raise fail("--time-limit must be >= 0")
    if algo != "all" and algo not in algorithms():
        raise fail(f"unknown algorithm {algo!r}; known: {', '.join(algorithms())}, all")
    inst = read_vbp(file)
    items, cap = as_problem(inst.items, inst.capacity)
    names = [*HEURISTICS, "local-search", "best"] if algo == "all" else [algo]
    results = [solve(items, cap, a, time_limit, seed=seed) for a in names]
    for r in results:  # solve() already checks; re-check what is about to be printed
        check_assignment(items, cap, r.assignment)
    lb = lower_bound(items, cap)
    if as_json:
        base = {"instance": inst.name, "items": int(items.shape[0]), "dimensions": int(items.shape[1])}
        out = [{**base, **r.to_dict(with_assignment=assignment)} for r in results]
        typer.echo(json.dumps(out[0] if len(out) == 1 else out))
        return
    table = Table(title=f"{inst.name}: {items.shape[0]} items, {items.shape[1]} dimensions, lower bound {lb}")
    for col in ("algo", "bins", "gap %", "optimal", "wall s", "stages"):
        table.add_column(col, justify="right" if col in ("bins", "gap %", "wall s") else "left")
    for r in results:
        gap = 100.0 * (r.bins - r.lower_bound) / r.lower_bound if r.lower_bound else 0.0
        table.add_row(r.algo, str(r.bins), f"{gap:.2f}", "yes" if r.optimal else "-", f"{r.wall_s:.3f}",
                      "; ".join(r.trace))
    console = Console()
    console.print(table)
    if assignment:
        for r in results:
            console.print(f"{r.algo}: " + " ".join(str(int(b)) for b in r.assignment))
