"""`poolvisor simulate alibaba --setup paper`: the FGD paper's experiment, one row per policy."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.online import paper as pp
from poolvisor.sim.online.paper_report import paper_report, rows, summary


def run_paper(directory: Path, policy: str, seeds: str, at: str, load: float, as_json: bool,
              report: Path | None) -> None:
    names = pp.policy_names(policy)
    seed_list = pp.parse_seeds(seeds)
    points = pp.parse_at(at)
    if load <= 0:
        raise InvalidInputError(f"--load {load:g}: must be > 0")
    data = pp.load_paper_data(directory)
    desc = (f"{data.node_names.size:,} GPU nodes, {data.capacity_milli // 1000:,} GPUs; {data.pods:,} pods "
            f"shuffled per seed, then resampled clones until requested GPU = {load:g} x capacity; no "
            f"departures; FGD target workload: {len(data.workload)} pod types (95 % of all pods)")
    if as_json:
        res = pp.run(data, names, seed_list, points, load=load)
    else:
        err = Console(stderr=True)
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*cols, console=err, transient=True) as bar:
            task = bar.add_task("paper setup", total=len(names) * len(seed_list))

            def tick(p: str, seed: int) -> None:
                bar.update(task, advance=1, description=f"paper setup: {p} seed {seed}")

            res = pp.run(data, names, seed_list, points, load=load, progress=tick)
    command = "poolvisor " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if report is not None:
        paper_report(res, desc, command).write(report)
    if as_json:
        out: dict[str, Any] = {"trace": "alibaba", "setup": "paper", "scenario": desc, **summary(res)}
        if report is not None:
            out["report"] = str(report)
        typer.echo(json.dumps(out))
        return
    con = Console()
    if not con.is_terminal:
        con = Console(width=160)
    con.print(f"[bold]alibaba, paper setup[/bold]: {desc}; seeds {', '.join(str(s) for s in seed_list)}")
    cols_, body = rows(res)
    table = Table(title="unallocated GPU % (median over seeds; paper = Weng et al. ATC'23, Figure 9a)")
    for c in cols_:
        table.add_column(c, justify="left" if c == "policy" else "right")
    for r in body:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in r])
    con.print(table)
    if report is not None:
        con.print(f"report written to {report}")
