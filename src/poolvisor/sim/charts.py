"""Charts comparing simulation runs: one row of metrics per run (policy, parameter, trace, seed).

Used by the simulator's own reports (poolvisor.sim.report) and by parameter sweeps
(poolvisor.sweep), which run the simulator; they live here so that the simulator never imports
the sweep layer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure as MplFigure

from poolvisor.domain.errors import InvalidInputError
from poolvisor.reporting.html import new_figure


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def group_label(key: Sequence[Any]) -> str:
    """('thr-mmt', 0.8) -> 'thr-mmt 0.8'; empty parts (no parameter) are dropped."""
    parts = [f"{v:g}" if isinstance(v, float) else str(v) for v in key if v is not None and v != ""]
    return " ".join(parts) or "(all)"


def _key(row: dict[str, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in keys)


def aggregate(
    rows: Iterable[dict[str, Any]], metric: str, group_by: Sequence[str], series_by: str | None
) -> tuple[list[tuple[Any, ...]], list[str], np.ndarray, np.ndarray]:
    """Mean and standard deviation of `metric` per (group, series) over the other axes (e.g. seeds).

    Returns (group keys, series labels, mean[G, S], std[G, S]) in order of first appearance;
    missing cells are NaN. Failed rows (with an `error`) are ignored.
    """
    cells: dict[tuple[tuple[Any, ...], str], list[float]] = defaultdict(list)
    groups: dict[tuple[Any, ...], None] = {}
    series: dict[str, None] = {}
    for r in rows:
        if r.get("error"):
            continue
        g = _key(r, group_by)
        s = str(r.get(series_by, "")) if series_by else ""
        groups.setdefault(g)
        series.setdefault(s)
        cells[(g, s)].append(_num(r.get(metric)))
    gl, sl = list(groups), list(series)
    gi = {g: i for i, g in enumerate(gl)}
    si = {s: i for i, s in enumerate(sl)}
    mean = np.full((len(gl), len(sl)), np.nan)
    std = np.full((len(gl), len(sl)), np.nan)
    for (g, s), vals in cells.items():
        a = np.asarray(vals, dtype=float)
        a = a[~np.isnan(a)]
        if a.size:
            mean[gi[g], si[s]] = a.mean()
            std[gi[g], si[s]] = a.std()
    return gl, sl, mean, std


def comparison_figure(
    rows: Sequence[dict[str, Any]],
    metric: str,
    group_by: Sequence[str] = ("policy", "param"),
    series_by: str | None = "trace",
    title: str | None = None,
) -> MplFigure:
    """Grouped bar chart: one group per policy/parameter, one bar per trace, error bar = std over seeds."""
    keys, sl, mean, std = aggregate(rows, metric, group_by, series_by)
    gl = [group_label(k) for k in keys]
    if not gl:
        raise InvalidInputError(f"no successful rows to plot for {metric!r}")
    fig = new_figure(max(6.0, 0.6 * len(gl) * max(1, len(sl)) + 2), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(sl))
    x = np.arange(len(gl))
    for j, s in enumerate(sl):
        err = np.nan_to_num(std[:, j])
        ax.bar(x + (j - (len(sl) - 1) / 2) * width, mean[:, j], width, yerr=err if err.any() else None,
               label=s or None, capsize=2)
    ax.set_xticks(x, gl, rotation=30 if len(gl) > 4 else 0, ha="right" if len(gl) > 4 else "center")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} by {' / '.join(group_by)}")
    ax.grid(axis="y", alpha=0.3)
    if len(sl) > 1 or (sl and sl[0]):
        ax.legend(fontsize="small", title=series_by)
    return fig


def tradeoff_figure(
    rows: Sequence[dict[str, Any]],
    x_metric: str = "energy_kwh",
    y_metric: str = "slav",
    group_by: Sequence[str] = ("policy", "param"),
) -> MplFigure:
    """Scatter of two metrics (e.g. energy vs SLA violation), one marker series per policy/param."""
    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    pts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if not r.get("error"):
            pts[group_label(_key(r, group_by))].append((_num(r.get(x_metric)), _num(r.get(y_metric))))
    if not pts:
        raise InvalidInputError("no successful rows to plot")
    for label, xy in pts.items():
        a = np.asarray(xy)
        ax.scatter(a[:, 0], a[:, 1], label=label, s=22)
    ax.set_xlabel(x_metric)
    ax.set_ylabel(y_metric)
    ax.set_title(f"{y_metric} vs {x_metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    return fig
