"""`poolvisor whatif`: replay the live pool's recorded utilization under other policies."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from poolvisor.cli.errors import fail
from poolvisor.cli.parse import number
from poolvisor.sim.result import SimResult

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_NAMED = 10  # VMs without history named in the table output (--json lists them all)
SHOWN = ("energy_kwh", "migrations", "slatah", "pdm", "slav", "esv", "host_shutdowns")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since`: an ISO 8601 instant (no offset = UTC) or a span back from now: 90m, 24h, 7d."""
    now = now or datetime.now(UTC)
    t = text.strip()
    if len(t) > 1 and t[-1] in _UNITS and t[:-1].replace(".", "", 1).isdigit():
        try:
            return now - timedelta(seconds=number(t[:-1]) * _UNITS[t[-1]])
        except (OverflowError, ValueError):
            raise fail(f"--since: {text!r} reaches back beyond the calendar") from None
    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        raise fail(f"--since: expected an ISO date/time or a span like 24h, 90m, 7d; got {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def whatif(
    history: Path | None = typer.Option(
        None, "--history", help=".npz: 'vms' (names), 'util' (VMs x steps, 0..1), optional 'interval_s' "
        "[default: the utilization recorded in the store]", show_default=False,
    ),
    policies: str | None = typer.Option(
        None, "--policies",
        help="Comma-separated, e.g. thr-mmt,lr-mmt: the simulator's replay [default: lr-mmt]",
        show_default=False),
    policy: str | None = typer.Option(
        None, "--policy", help="Digital twin: replay the window through the controller loop itself with "
        "this policy (adaptive, thr-mmt, lr-mmt, pack, spread, ...) and compare with what happened",
        show_default=False),
    hours: float | None = typer.Option(None, "--hours", parser=number,
        help="Digital twin: the window, the last H hours [default: 24]", show_default=False),
    round_s: float | None = typer.Option(None, "--round", parser=number,
        help="Digital twin: seconds between the controller's rounds [default: --interval]",
        show_default=False),
    boot_s: float = typer.Option(60.0, "--boot", parser=number,
        help="Digital twin: seconds a standby host takes to boot"),
    param: float | None = typer.Option(None, "--param", help="Parameter for every policy (default: its own)",
        parser=number),
    pool: str | None = typer.Option(None, "--pool", help="Pool to replay (default: every host)"),
    db: str | None = typer.Option(None, "--db", help="Database URL or SQLite file (default: as `serve`)"),
    interval: float = typer.Option(300.0, "--interval", help="Step length in seconds (store history)",
        parser=number),
    steps: int | None = typer.Option(None, "--steps", help="Replay the last N steps (store history)"),
    since: str | None = typer.Option(
        None, "--since", help="Replay from this ISO date/time or span back (24h, 7d) (store history)"),
    fresh: bool = typer.Option(
        False, "--fresh", help="Let each policy place the VMs too (default: start from the current placement)"
    ),
    seed: int = typer.Option(0, "--seed"),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML comparison"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON array (baseline first)."),
) -> None:
    """Compare the pool as it runs (no migrations) with consolidation policies on its own history.

    With --policy: the digital twin (the controller loop itself on a simulated clock over the last
    --hours, against what the store recorded). VMs without any recorded utilization replay at their
    full vCPU reservation (listed after the table).
    """
    if policy is not None:
        if history is not None or steps is not None or since is not None or fresh or report is not None \
                or policies is not None:
            raise fail("--policy (the digital twin) takes --hours, --param, --pool, --interval, --round, "
                       "--boot, --json; not --policies, --history, --steps, --since, --fresh or --report")
        _twin(db, pool, policy, param, 24.0 if hours is None else hours, interval, round_s, boot_s, json_out)
        return
    if hours is not None or round_s is not None:
        raise fail("--hours and --round go with --policy (the digital twin)")
    policies = policies or "lr-mmt"
    from poolvisor.services import open_services
    from poolvisor.sim.whatif import (
        NO_HISTORY_RULE,
        history_from_file,
        history_from_store,
        pool_from_services,
        simulate_whatif,
    )
    from poolvisor.sweep.grid import parse_csv_list

    if history is not None and (steps is not None or since is not None):
        raise fail("--steps and --since select from the store's history; not with --history")
    if steps is not None and since is not None:
        raise fail("give --steps or --since, not both")
    if history is not None and not history.is_file():
        raise fail(f"history file not found: {history}")
    start = parse_since(since) if since is not None else None
    svc = open_services(db)
    try:
        snap = pool_from_services(svc, pool)
        if not snap.vms:
            raise fail(f"no running VM on {'pool ' + repr(pool) if pool else 'any host'}: nothing to replay")
        hist, missing = (history_from_file(history, snap.vms) if history is not None
                         else history_from_store(svc, snap.vms, interval, steps=steps, since=start))
    finally:
        svc.close()
    runs: list[SimResult] = [simulate_whatif(snap, hist, "dvfs", seed=seed, keep_placement=not fresh)]
    runs[0].policy = "as-is" if not fresh else "first-fit"
    for p in parse_csv_list(policies, "--policies"):
        runs.append(simulate_whatif(snap, hist, p, param, seed=seed, keep_placement=not fresh))
    written = None
    if report is not None:
        from poolvisor.sim.report import write_simulation_report

        note = f" ({len(missing)} VM(s) without history at their reservation)" if missing else ""
        title = f"What-if on pool {pool or '(all hosts)'}{note}"
        written = write_simulation_report(runs, report, title=title)
    without = {"count": len(missing), "vms": missing, "replayed_as": NO_HISTORY_RULE}
    if json_out:  # the note goes with every run: the array stays what scripts already read
        typer.echo(json.dumps([{**r.to_dict(series=False), "without_history": without} for r in runs]))
        return
    since_note = "" if hist.start_s is None else \
        f" from {datetime.fromtimestamp(hist.start_s, UTC):%Y-%m-%d %H:%M} UTC"
    t = Table(title=f"what-if: {len(snap.vms)} VMs on {len(snap.hosts)} hosts, "
              f"{hist.util.shape[1]} steps of {hist.interval_s:g} s{since_note}")
    t.add_column("policy")
    for k in SHOWN:
        t.add_column(k, justify="right")
    for r in runs:
        t.add_row(r.label, *(_cell(r.metrics.get(k, "")) for k in SHOWN))
    Console(width=None if sys.stdout.isatty() else 160).print(t)
    if missing:
        shown = ", ".join(missing[:MAX_NAMED]) + (f" and {len(missing) - MAX_NAMED} more"
                                                  if len(missing) > MAX_NAMED else "")
        typer.echo(f"note: {len(missing)} of {len(snap.vms)} VM(s) have no recorded utilization and "
                   f"replay at {NO_HISTORY_RULE}: {shown}")
    if written is not None:
        typer.echo(f"report: {written}")


TWIN_SHOWN = ("energy_kwh", "slatah", "pdm", "slav", "esv", "migrations", "hosts_on_mean", "hosts_on_max")


def _twin(db: str | None, pool: str | None, policy: str, param: float | None, hours: float, interval: float,
          round_s: float | None, boot_s: float, json_out: bool) -> None:
    """`whatif --policy`: run the digital twin (sim/twin.py) and print both sides."""
    from poolvisor.services import open_services
    from poolvisor.sim.twin import run_twin

    svc = open_services(db)
    try:
        r = run_twin(svc, pool, policy, hours, param=param, interval_s=interval, round_s=round_s,
                     boot_s=boot_s)
    finally:
        svc.close()
    if json_out:
        typer.echo(json.dumps(r.to_dict()))
        return
    start = datetime.fromtimestamp(r.start_s, UTC)
    t = Table(title=f"digital twin: {r.vms} workloads on {r.hosts} hosts, {hours:g} h from "
              f"{start:%Y-%m-%d %H:%M} UTC ({r.steps} steps of {r.interval_s:g} s, {r.rounds} controller "
              f"rounds every {r.round_s:g} s)")
    t.add_column("")
    for k in TWIN_SHOWN:
        t.add_column(k, justify="right")
    t.add_row("actual (recorded)", *(_cell(r.actual[k]) for k in TWIN_SHOWN))
    t.add_row(f"twin: {r.policy}", *(_cell(r.twin[k]) for k in TWIN_SHOWN))
    t.add_row("change", *(_change(r.actual[k], r.twin[k]) for k in TWIN_SHOWN))
    Console(width=None if sys.stdout.isatty() else 160).print(t)
    if r.without_history:
        typer.echo(f"note: {len(r.without_history)} workload(s) have no recorded utilization and replay at "
                   f"their whole vCPU reservation: {', '.join(r.without_history[:MAX_NAMED])}")
    for n in r.notes:
        typer.echo(f"note: {n}")


def _change(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a:
        return f"{100 * (b - a) / abs(a):+.1f} %"
    return "" if a == b else f"{b - a:+.4g}"
