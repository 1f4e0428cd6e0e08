"""`poolvisor simulate planetlab DIR`: dynamic consolidation on a PlanetLab day (CloudSim scenario)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from poolvisor.cli.errors import fail
from poolvisor.cli.parse import number
from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.adaptive import DEFAULT_BALANCING_POLICY
from poolvisor.policies.balancing.limits import Limits
from poolvisor.sim.result import SimResult

_ROWS = (
    ("energy_kwh", "energy (kWh)", "{:.2f}"),
    ("migrations", "migrations", "{:,}"),
    ("slatah", "SLATAH", "{:.4%}"),
    ("pdm", "PDM", "{:.4%}"),
    ("slav", "SLAV", "{:.6%}"),
    ("esv", "ESV", "{:.6f}"),
    ("sla_overall", "overall SLA violation", "{:.4%}"),
    ("host_shutdowns", "host shutdowns", "{:,}"),
    ("hosts", "hosts", "{:,}"),
    ("vms", "VMs", "{:,}"),
    ("wall_s", "wall time (s)", "{:.2f}"),
)


def _table(res: SimResult) -> Table:
    mode = res.compat or "default"
    table = Table(title=f"{res.trace}: {res.label} ({mode} mode)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, fmt in _ROWS:
        if key in res.metrics:
            table.add_row(label, fmt.format(res.metrics[key]))
    if res.rules:
        table.add_row("migrations by rule", ", ".join(f"{k}: {v:,}" for k, v in sorted(res.rules.items())))
    return table


_LIMIT_KEYS = {"per_host": "per_host", "per_pool": "per_pool", "cooldown": "cooldown_s"}


def parse_limits(text: str) -> Limits:
    """`--limits`: 'controller' (Limits() as the controller has it) or per_host=N,per_pool=N,cooldown=S."""
    t = text.strip().lower()
    if t == "controller":
        return Limits()
    kw: dict[str, float | int] = {}
    for part in (p.strip() for p in t.split(",") if p.strip()):
        k, sep, v = part.partition("=")
        if not sep or k.strip() not in _LIMIT_KEYS:
            raise fail(f"--limits: expected 'controller' or per_host=N,per_pool=N,cooldown=S; got {text!r}")
        try:
            val = number(v.strip())
        except ValueError as e:
            raise fail(f"--limits: {k.strip()}: {e}") from None
        name = _LIMIT_KEYS[k.strip()]
        if name != "cooldown_s":
            if val != int(val):
                raise fail(f"--limits: {k.strip()} must be a whole number")
            kw[name] = int(val)
        else:
            kw[name] = val
    if not kw:
        raise fail("--limits: give 'controller' or at least one of per_host, per_pool, cooldown")
    try:
        return Limits(**kw)  # type: ignore[arg-type]
    except ValueError as e:
        raise fail(f"--limits: {e}") from None


def register(app: typer.Typer) -> None:
    @app.command("planetlab")
    def planetlab(
        directory: Path = typer.Argument(..., help="A PlanetLab day: one file of 288 CPU percentages per VM"),
        policy: str = typer.Option(
            DEFAULT_BALANCING_POLICY,
            "--policy",
            "-p",
            help="adaptive (the default), npa, dvfs or <thr|iqr|mad|lr|lrr>-<mmt|mu|mc|rs|lp> (e.g. lr-mmt)",
        ),
        param: float | None = typer.Option(
            None,
            "--param",
            parser=number,
            help="Threshold (thr) or safety parameter (iqr, mad, lr, lrr, adaptive); default per policy",
        ),
        compat: str | None = typer.Option(
            None,
            "--compat",
            help="'cloudsim': reproduce CloudSim 3.0.3 bug for bug (default: corrected model)",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for random VM selection (rs)"),
        hosts: int = typer.Option(800, "--hosts", min=1, help="Number of hosts (CloudSim scenario: 800)"),
        check_ram: bool = typer.Option(
            False,
            "--check-ram",
            help="Default mode: also require the VM's RAM to fit (CloudSim never checks it)",
        ),
        underload_limit: int | None = typer.Option(
            None,
            "--underload-limit",
            min=0,
            help="Default mode: try at most this many underloaded hosts per step (default: all of them)",
        ),
        limits: str | None = typer.Option(
            None,
            "--limits",
            help="Default mode: the live controller's balancing limits on every migration: 'controller' "
            "(its defaults) or per_host=N,per_pool=N,cooldown=S (the rest as the controller's)",
        ),
        contention: str = typer.Option(
            "proportional",
            "--contention",
            help="How an overloaded host shares its CPU: proportional (CloudSim: every VM scaled alike) "
            "or shares (default mode: reservations first, then shares by VM size; docs/scheduling.md)",
        ),
        reserve: float | None = typer.Option(
            None,
            "--reserve",
            parser=number,
            help="With --contention shares: the fraction of its MIPS each VM reserves, 0..1 [default: 0]",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
        report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report"),
    ) -> None:
        """Replay a PlanetLab day under a consolidation policy and print energy, SLA and migrations."""
        from poolvisor.sim.planetlab import simulate_planetlab

        if contention not in ("proportional", "shares"):
            raise InvalidInputError(f"--contention {contention!r}: use proportional or shares")
        if reserve is not None and contention != "shares":
            raise InvalidInputError("--reserve needs --contention shares")
        shares_reserve = (reserve if reserve is not None else 0.0) if contention == "shares" else None
        simulate = partial(
            simulate_planetlab, directory, policy, param, compat, seed=seed, hosts=hosts, check_ram=check_ram,
            underload_limit=underload_limit, limits=None if limits is None else parse_limits(limits),
            reserve=shares_reserve,
        )  # fmt: skip
        if as_json:
            res = simulate()
        else:
            cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*cols, console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task(f"{directory.name}: {policy}", total=None)

                def tick(step: int, total: int) -> None:
                    bar.update(task, completed=step, total=total)

                res = simulate(progress=tick)
        written: Path | None = None
        if report is not None:
            from poolvisor.sim.report import write_simulation_report

            written = write_simulation_report(res, report)
        if as_json:
            out = res.to_dict(series=False)
            if written is not None:
                out["report"] = str(written)
            typer.echo(json.dumps(out))
            return
        con = Console()
        con.print(_table(res))
        if written is not None:
            con.print(f"report written to {written}")
