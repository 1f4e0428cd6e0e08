"""HTML report of a sweep: the rows averaged over seeds, and one comparison chart per metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from poolvisor.reporting import Report
from poolvisor.sim.charts import aggregate, comparison_figure, tradeoff_figure
from poolvisor.sweep.output import DEFAULT_METRICS, columns_of


def sweep_report(
    rows: Sequence[dict[str, Any]],
    title: str = "Sweep",
    metrics: Sequence[str] = DEFAULT_METRICS,
    group_by: Sequence[str] = ("policy", "param"),
    series_by: str | None = "trace",
) -> Report:
    ok = [r for r in rows if not r.get("error")]
    failed = [r for r in rows if r.get("error")]
    present = [m for m in metrics if any(m in r for r in ok)]
    rep = Report(title, subtitle=f"{len(rows)} runs, {len(failed)} failed")
    if present:
        rep.heading("Mean over seeds")
        cols = [*group_by, *([series_by] if series_by else []), *present]
        means = {m: aggregate(ok, m, group_by, series_by) for m in present}
        keys, sl = means[present[0]][0], means[present[0]][1]
        table_rows = [
            [*g, *([s] if series_by else []), *(float(means[m][2][gi, si]) for m in present)]
            for gi, g in enumerate(keys)
            for si, s in enumerate(sl)
        ]
        rep.table(cols, table_rows)
        rep.heading("Comparison")
        for m in present:
            fig = comparison_figure(ok, m, group_by, series_by)
            rep.figure(fig, caption=f"{m}: mean, error bar = std over seeds")
        if "energy_kwh" in present and "slav" in present:
            rep.figure(tradeoff_figure(ok, "energy_kwh", "slav", group_by), caption="energy vs SLA violation")
    if failed:
        rep.heading("Failed runs")
        cols = [c for c in columns_of(failed) if c in (*group_by, "trace", "seed", "error")]
        rep.table(cols, [[r.get(c) for c in cols] for r in failed])
    return rep
