"""`poolvisor simulate alibaba|azure|google`: online packing of real traces, one row per policy."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from poolvisor.cli.parse import number
from poolvisor.cli.simulate_paper import run_paper
from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.queueing import check_discipline
from poolvisor.sim.online import scenarios as sc
from poolvisor.sim.online.engine import OnlineResult
from poolvisor.sim.online.policies import policy_names
from poolvisor.sim.online.report import SHORT, online_report, rows

_HERE_SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
SHARED = Path(os.environ.get("POOLVISOR_SHARED_DATA", _HERE_SHARED))

PolicyOpt = typer.Option("all", "--policy", "-p", help="first-fit, best-fit, worst-fit, dot-product, fgd, "
                         "a comma-separated list, or all")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object instead of a table")
ReportOpt = typer.Option(None, "--report", help="Write a self-contained HTML report (table and plots)")
SamplesOpt = typer.Option(300, "--samples", min=2, help="Metric samples over the run (time series points)")
CheckOpt = typer.Option(False, "--check", help="Verify capacity invariants after every event (slow)")
QueueOpt = typer.Option(None, "--queue", help="Arrivals that do not fit wait instead of being rejected, "
                        "served in this discipline (fifo, priority, sjf, round-robin, drf, ps-n: the live "
                        "queue's code); wait times per class and project are reported")
WeightsOpt = typer.Option(None, "--project-weights", help="With --queue drf: the projects' fair-share "
                          "weights (JSON object or 'project,weight' CSV; unnamed projects weigh 1, as live "
                          "ones do)")


def _default(name: str) -> Path:
    return SHARED / name


def _run(
    scn: sc.Scenario, policy: str, as_json: bool, report: Path | None, samples: int, check: bool,
    queue: str | None = None,
    project_weights: Path | None = None,
) -> None:
    names = policy_names(policy)
    if queue is not None:
        check_discipline(queue)
    weights = None
    if project_weights is not None:
        if queue != "drf":
            raise InvalidInputError("--project-weights applies to --queue drf (the only weighted discipline)")
        from poolvisor.sim.online.weights import load_weights  # the store's limits: not at CLI start

        weights = load_weights(project_weights)
    results: list[OnlineResult] = []
    total = len(scn.workload) * len(names)
    if as_json:
        results = sc.run(scn, names, samples=samples, check=check, queue=queue, weights=weights)
    else:
        err = Console(stderr=True)
        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*cols, console=err, transient=True) as bar:
            task = bar.add_task(f"{scn.name}: replaying", total=total)

            def tick(k: int) -> None:
                bar.advance(task, k)

            for name in names:
                bar.update(task, description=f"{scn.name}: {name}")
                results.extend(sc.run(scn, [name], samples=samples, check=check, progress=tick, queue=queue,
                                      weights=weights))
    command = "poolvisor " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if report is not None:
        title = f"Online packing: {scn.name}"
        online_report(title, scn.description, results, command).write(report)
    if as_json:
        out: dict[str, Any] = {"trace": scn.name, "scenario": scn.description, "jobs": len(scn.workload),
                               "results": [r.to_dict() for r in results]}
        if report is not None:
            out["report"] = str(report)
        typer.echo(json.dumps(out, default=_json_default))
        return
    con = Console()
    if not con.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        con = Console(width=160)
    con.print(f"[bold]{scn.name}[/bold]: {scn.description}; {len(scn.workload):,} arrivals")
    table = Table()
    for c in SHORT:
        table.add_column(c, justify="left" if c == "policy" else "right")
    for row in rows(results):
        table.add_row(*[_cell(v) for v in row])
    con.print(table)
    primary = results[0].primary if results else ""
    label = "GPU" if primary == "devices" else primary
    con.print(f"alloc = allocated fraction of {label}; frag = its expected fragmentation (ATC'23 measure) "
              "as a fraction of capacity; hosts = hosts running a job")
    for r in results:
        if r.reasons:
            why = ", ".join(f"{k} {v:,}" for k, v in sorted(r.reasons.items(), key=lambda kv: -kv[1]))
            con.print(f"  {r.policy} rejected: {why}")
    for r in results:
        if r.queue is not None:
            con.print(_wait_table(r))
            w = r.queue.get("weights")
            if w:
                missing = f" (not in it: {', '.join(w['not_in_trace'])})" if w["not_in_trace"] else ""
                con.print(f"  drf weights from {w['file']}: {w['in_trace']} of {w['named']} named projects "
                          f"in the trace{missing}")
    if report is not None:
        con.print(f"report written to {report}")


def _wait_table(r: OnlineResult) -> Table:
    """Wait times of the jobs that waited, per priority class and per project."""
    assert r.queue is not None
    t = Table(title=f"{r.policy}: queue ({r.queue['discipline']}), waits in {r.time_unit}")
    for c in ("class / project", "waited", "served", "mean wait", "p95 wait", "max wait", "waiting at end"):
        t.add_column(c, justify="left" if c == "class / project" else "right")
    groups = [("all", r.queue["all"])] + [(f"class {k}", v) for k, v in r.queue["by_class"].items()] + \
        [(f"project {k}", v) for k, v in r.queue["by_project"].items()]
    for label, v in groups:
        t.add_row(label, _cell(v["waited"]), _cell(v["served"]),
                  *[_cell(float("nan") if v[k] is None else round(v[k], 2))
                    for k in ("mean_wait", "p95_wait", "max_wait")], _cell(v["waiting_at_end"]))
    return t


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "–" if v != v else f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def alibaba(
    directory: Path = typer.Argument(_default("alibaba-gpu-2023"), help="Folder with the openb CSVs"),
    policy: str = typer.Option(
        "all", "--policy", "-p", help="first-fit, best-fit, worst-fit, dot-product, fgd, a comma-separated "
        "list, or all; with --setup paper: random, dotprod, gpu-clustering, gpu-packing, best-fit, fgd, "
        "fgd-ri (or the ablations fgd-exact, fgd-residue, fgd-interleave), paper or all"),
    setup: str = typer.Option(
        "default", "--setup", help="default: this project's fleet and runs; paper: the FGD paper's "
        "experiment (its GPU nodes, shuffled arrivals per seed, its baselines and metric)"),
    mode: str | None = typer.Option(
        None, "--mode", help="replay (default): creation/deletion times; fill: the FGD paper's saturation "
        "run (no departures, arrivals until --load x GPU capacity)"),
    speedup: float | None = typer.Option(None, "--speedup", help="replay: divide arrival times by this",
                                          parser=number),
    load: float = typer.Option(1.3, "--load", help="fill, paper: stop when requested GPU is this x capacity",
                             parser=number),
    seed: int = typer.Option(0, "--seed", help="fill: seed for resampling pods"),
    seeds: str | None = typer.Option(None, "--seeds", help="paper: seeds, e.g. 42-51 (default) or 0,3,7"),
    at: str | None = typer.Option(None, "--at", help="paper: arrived % of GPU capacity to report, e.g. "
                                  "100,130 (default)"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N pods of the trace"),
    as_json: bool = JsonOpt,
    report: Path | None = ReportOpt,
    samples: int = SamplesOpt,
    check: bool = CheckOpt,
    queue: str | None = QueueOpt,
    project_weights: Path | None = WeightsOpt,
) -> None:
    """Alibaba GPU 2023 pods (CPU, memory, fractional GPU) on its real nodes (classes from QoS:
    Guaranteed high, LS normal, Burstable low, BE spot)."""
    if setup == "paper":
        opts = (("--mode", mode), ("--speedup", speedup), ("--limit", limit))
        given = [n for n, v in opts if v is not None]
        if check:
            given.append("--check")
        if queue is not None:
            given.append("--queue")
        if project_weights is not None:
            given.append("--project-weights")
        if given:
            raise InvalidInputError(f"{', '.join(given)} do not apply to --setup paper")
        run_paper(directory, policy, seeds or "42-51", at or "100,130", load, as_json, report)
        return
    if setup != "default":
        raise InvalidInputError(f"--setup {setup!r}: use default or paper")
    if seeds is not None or at is not None:
        raise InvalidInputError("--seeds and --at need --setup paper")
    mode = mode or "replay"
    if mode not in ("replay", "fill"):
        raise InvalidInputError(f"--mode {mode!r}: use replay or fill")
    scn = sc.alibaba(directory, mode="fill" if mode == "fill" else "replay", speedup=speedup or 1.0,
                     load=load, seed=seed, limit=limit)
    _run(scn, policy, as_json, report, samples, check, queue, project_weights)


def azure(
    directory: Path = typer.Argument(_default("azure-v1-flavour-arrivals"), help="Folder with v1.test*.txt"),
    policy: str = PolicyOpt,
    hosts: int = typer.Option(1000, "--hosts", min=1, help="Homogeneous fleet size"),
    host_vcpu: float = typer.Option(64.0, "--host-vcpu", parser=number, help="vCPU per host"),
    host_mem_gb: float = typer.Option(512.0, "--host-mem-gb", parser=number, help="Memory (GB) per host"),
    fleet: str | None = typer.Option(None, "--fleet", help="Mixed fleet, e.g. 64x512:600,32x256:400 "
                                     "(overrides --hosts)"),
    limit_bins: int | None = typer.Option(None, "--limit-bins", min=1, help="Only the first N 300 s bins"),
    duration: str = typer.Option("mid", "--duration", help="VM duration within its bin: mid, low or high"),
    as_json: bool = JsonOpt,
    report: Path | None = ReportOpt,
    samples: int = SamplesOpt,
    check: bool = CheckOpt,
    queue: str | None = QueueOpt,
    project_weights: Path | None = WeightsOpt,
) -> None:
    """Azure V1 VM flavour arrivals (with durations) on a fixed fleet."""
    if duration not in ("mid", "low", "high"):
        raise typer.BadParameter("use mid, low or high", param_hint="--duration")
    how: Literal["mid", "low", "high"] = "low" if duration == "low" else "mid"
    if duration == "high":
        how = "high"
    scn = sc.azure(directory, hosts=hosts, vcpu=host_vcpu, memory_gb=host_mem_gb, fleet=fleet,
                   limit_bins=limit_bins, duration=how)
    _run(scn, policy, as_json, report, samples, check, queue, project_weights)


def google(
    directory: Path = typer.Argument(_default("google-2011-samples"), help="Folder with machine/task events"),
    policy: str = PolicyOpt,
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N task instances"),
    as_json: bool = JsonOpt,
    report: Path | None = ReportOpt,
    samples: int = SamplesOpt,
    check: bool = CheckOpt,
    queue: str | None = QueueOpt,
    project_weights: Path | None = WeightsOpt,
) -> None:
    """Google 2011 task instances on the machines of its machine events (with removals); projects
    are the trace's users, classes its priority bands (0-1 spot, 2-8 normal, 9-10 high, 11 system)."""
    _run(sc.google(directory, limit=limit), policy, as_json, report, samples, check, queue, project_weights)


def register(app: typer.Typer) -> None:
    """Add the three trace commands to the `simulate` sub-app."""
    app.command("alibaba")(alibaba)
    app.command("azure")(azure)
    app.command("google")(google)
