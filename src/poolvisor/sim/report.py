"""HTML reports of simulation runs: time series of one run, or a per-policy comparison of several.

Built on the generic poolvisor.reporting helper, so the output is one self-contained file.
Depends only on SimResult, so it works for every trace format the simulator reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure

from poolvisor.domain.errors import InvalidInputError
from poolvisor.reporting import Report, new_figure
from poolvisor.sim.charts import comparison_figure
from poolvisor.sim.result import METRIC_KEYS, SimResult

COMPARED_METRICS = ("energy_kwh", "migrations", "slatah", "pdm", "slav", "esv", "sla_overall")


def _hours(r: SimResult) -> np.ndarray:
    return np.asarray(r.time_s, dtype=float) / 3600.0


def _series_axes(title: str, ylabel: str) -> tuple[MplFigure, Axes]:
    fig = new_figure(9.0, 3.2)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("time (h)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _has_series(r: SimResult) -> bool:
    return len(r.time_s) > 0


def time_series_figures(results: Sequence[SimResult]) -> list[tuple[MplFigure, str]]:
    """Active hosts, power and SLA violation over time; one line per run."""
    runs = [r for r in results if _has_series(r)]
    if not runs:
        return []
    many = len(runs) > 1
    out: list[tuple[MplFigure, str]] = []
    specs: list[tuple[str, str, str, Any]] = [
        ("active hosts", "hosts", "Active hosts (hosts with load) at each step", lambda r: r.active_hosts),
        ("power", "kW", "Total power drawn by the hosts", lambda r: np.asarray(r.power_w) / 1000.0),
        (
            "SLA violation",
            "fraction of active hosts",
            "Fraction of active hosts whose demand exceeded their allocation",
            lambda r: r.sla_violation,
        ),
    ]
    for title, ylabel, caption, get in specs:
        fig, ax = _series_axes(title, ylabel)
        for r in runs:
            y = np.asarray(get(r), dtype=float)
            if y.size == len(r.time_s):
                ax.plot(_hours(r), y, lw=1.1, label=r.label if many else None)
        if many:
            ax.legend(fontsize="small", ncol=2)
        out.append((fig, caption))
    mig = [r for r in runs if len(r.migrations) == len(r.time_s) and np.asarray(r.migrations).sum() > 0]
    if mig:
        fig, ax = _series_axes("migrations", "migrations started")
        for r in mig:
            ax.step(_hours(r), np.cumsum(r.migrations), where="post", lw=1.1, label=r.label if many else None)
        ax.set_ylabel("cumulative migrations")
        if many:
            ax.legend(fontsize="small", ncol=2)
        out.append((fig, "Cumulative live migrations"))
    return out


def _metrics_rows(results: Sequence[SimResult]) -> tuple[list[str], list[list[Any]]]:
    keys = [k for k in METRIC_KEYS if any(k in r.metrics for r in results)]
    cols = ["policy", "trace", "compat", "seed", *keys]
    rows = [
        [r.label, r.trace, r.compat or "default", r.seed, *(r.metrics.get(k) for k in keys)] for r in results
    ]
    return cols, rows


def simulation_report(result: SimResult, title: str | None = None) -> Report:
    """One run: its metrics, which rules fired, and its time series."""
    rep = Report(
        title or f"Simulation: {result.label} on {result.trace}",
        subtitle=f"mode: {result.compat or 'default'}, seed {result.seed}",
    )
    rep.heading("Metrics").key_values([(k, v) for k, v in result.metrics.items()])
    if result.rules:
        rep.table(["rule", "count"], sorted(result.rules.items(), key=lambda kv: -kv[1]), title="Rules fired")
    figs = time_series_figures([result])
    if figs:
        rep.heading("Over time")
        for fig, cap in figs:
            rep.figure(fig, cap)
    return rep


def comparison_report(results: Sequence[SimResult], title: str = "Policy comparison") -> Report:
    """Several runs (policies, parameters, traces): a metrics table, bar charts, overlaid series."""
    if not results:
        raise InvalidInputError("no simulation results to report")
    traces = sorted({r.trace for r in results})
    rep = Report(title, subtitle=f"{len(results)} runs on {', '.join(traces)}")
    cols, rows = _metrics_rows(results)
    rep.heading("Metrics").table(cols, rows)
    flat = [
        {"policy": r.policy, "param": r.param, "trace": r.trace, **r.metrics, "error": ""} for r in results
    ]
    present = [m for m in COMPARED_METRICS if any(m in r.metrics for r in results)]
    if present:
        rep.heading("Per-policy comparison")
        for m in present:
            rep.figure(comparison_figure(flat, m, ("policy", "param"), "trace"), caption=f"{m} per policy")
    figs = time_series_figures(results)
    if figs:
        rep.heading("Over time")
        for fig, cap in figs:
            rep.figure(fig, cap)
    return rep


def write_simulation_report(
    results: SimResult | Sequence[SimResult], path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """The `--report` hook: one run -> its report; several -> the comparison. Returns the path."""
    runs = [results] if isinstance(results, SimResult) else list(results)
    if len(runs) == 1:
        rep = simulation_report(runs[0], title)
    else:
        rep = comparison_report(runs, title or "Policy comparison")
    return rep.write(path)
