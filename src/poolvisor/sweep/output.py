"""Sweep results on disk: a CSV with one row per grid point, and comparison plots (PNG).

The charts themselves are the simulator's (poolvisor.sim.charts): a sweep runs simulations, so it
depends on the simulator, never the other way round.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poolvisor.reporting.html import figure_png
from poolvisor.sim.charts import comparison_figure, tradeoff_figure


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
