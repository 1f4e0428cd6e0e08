"""Sweep results on disk: a CSV with one row per grid point, and comparison plots (PNG)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure as MplFigure

from poolvisor.domain.errors import InvalidInputError
from poolvisor.reporting.html import figure_png, new_figure


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Union of the row keys in order of first appearance ('error' last)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    if "error" in cols:
        cols.remove("error")
        cols.append("error")
    return cols


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns_of(rows), restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return p


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a sweep CSV back; numeric-looking cells become floats."""
    def conv(v: str) -> Any:
        if v == "":
            return None
        try:
            return float(v)
        except ValueError:
            return v

    with Path(path).open(newline="", encoding="utf-8") as f:
        return [{k: conv(v) for k, v in r.items()} for r in csv.DictReader(f)]


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


DEFAULT_METRICS = ("energy_kwh", "migrations", "slatah", "pdm", "slav", "esv")


def write_plots(
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    group_by: Sequence[str] = ("policy", "param"),
    series_by: str | None = "trace",
) -> list[Path]:
    """One PNG per metric present in the rows, plus energy-vs-SLAV when both exist."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if not r.get("error")]
    present = [m for m in metrics if any(m in r for r in ok)]
    written = []
    for m in present:
        p = d / f"{m}.png"
        p.write_bytes(figure_png(comparison_figure(ok, m, group_by, series_by)))
        written.append(p)
    if "energy_kwh" in present and "slav" in present:
        p = d / "energy_vs_slav.png"
        p.write_bytes(figure_png(tradeoff_figure(ok, "energy_kwh", "slav", group_by)))
        written.append(p)
    return written
