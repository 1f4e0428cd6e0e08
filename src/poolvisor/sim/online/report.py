"""Per-policy comparison of online replays: table rows (CLI and HTML) and the HTML report's plots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from poolvisor.reporting import Report, new_figure
from poolvisor.sim.online.engine import OnlineResult

COLUMNS = ("policy", "accepted", "acceptance", "first rejection", "rejected", "evicted", "hosts active mean",
           "hosts active peak", "allocated mean", "allocated end", "frag mean", "frag end", "wall s")
SHORT = ("policy", "accepted", "ratio", "1st reject", "rejected", "evicted", "hosts mean", "hosts peak",
         "alloc", "alloc end", "frag mean", "frag end", "wall s")


def _primary_alloc(r: OnlineResult) -> np.ndarray:
    """Allocated fraction of the resource the fragmentation is measured on (GPU, vCPU, CPU)."""
    if not r.alloc_frac.size:
        return np.zeros(0)
    names = list(r.resources)
    col = names.index("gpu_milli") if r.primary == "devices" and "gpu_milli" in names else (
        names.index(r.primary) if r.primary in names else 0)
    return r.alloc_frac[:, col]


def _first(r: OnlineResult) -> str:
    """When the first arrival was turned away: arrived load in fill mode, else time since the start."""
    if r.first_rejection != r.first_rejection:  # nan: never
        return "never"
    if r.time_unit != "s":
        return f"{r.first_rejection:.4f}"
    dt = float(r.first_rejection - (r.time[0] if r.time.size else 0.0))
    if dt >= 2 * 86400:
        return f"{dt / 86400:.2f} d"
    if dt >= 2 * 3600:
        return f"{dt / 3600:.1f} h"
    return f"{dt:.0f} s"


def rows(results: Sequence[OnlineResult]) -> list[list[Any]]:
    out = []
    for r in results:
        m = r.metrics()
        alloc = _primary_alloc(r)
        out.append([
            r.policy, r.accepted, round(r.acceptance, 4), _first(r), r.rejected, r.evicted,
            round(m["hosts_active_mean"], 1), m["hosts_active_peak"],
            round(float(alloc.mean()), 4) if alloc.size else float("nan"),
            round(float(alloc[-1]), 4) if alloc.size else float("nan"),
            round(m["frag_mean"], 4), round(m["frag_end"], 4), round(r.wall_s, 2),
        ])
    return out


def _time_axis(r: OnlineResult) -> tuple[np.ndarray, str]:
    if r.time_unit == "s":
        t = r.time - (r.time[0] if r.time.size else 0.0)
        span = float(t[-1]) if t.size else 0.0
        if span > 3 * 86400:
            return t / 86400.0, "time since the first arrival (days)"
        if span > 3 * 3600:
            return t / 3600.0, "time since the first arrival (h)"
        return t, "time since the first arrival (s)"
    return r.time, f"arrived {r.time_unit} (fraction of capacity)"


def _series_figure(results: Sequence[OnlineResult], title: str, ylabel: str, pick: Any) -> Any:
    fig = new_figure(9.0, 3.4)
    ax = fig.add_subplot()
    xlabel = ""
    for r in results:
        y = pick(r)
        if not np.size(y):
            continue
        x, xlabel = _time_axis(r)
        ax.plot(x, y, label=r.policy, lw=1.2)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=min(5, max(1, len(results))))
    return fig


def online_report(title: str, description: str, results: Sequence[OnlineResult], command: str = "") -> Report:
    rep = Report(title, subtitle=description)
    rep.heading("Comparison")
    rep.table(COLUMNS, rows(results))
    reasons = sorted({k for r in results for k in r.reasons})
    if reasons:
        by_reason = [[r.policy, *[r.reasons.get(k, 0) for k in reasons]] for r in results]
        rep.table(["policy", *reasons], by_reason, title="Rejected arrivals by reason")
    fig = new_figure(7.0, 3.0)
    ax = fig.add_subplot()
    names = [r.policy for r in results]
    acc = [r.acceptance for r in results]
    ax.bar(names, acc, color="#4a6fa5")
    lo = min(acc) if acc else 0.0
    ax.set_ylim(max(0.0, lo - (1 - lo) * 0.5 - 0.01), 1.0)
    ax.set_ylabel("accepted / arrived")
    ax.set_title("Acceptance ratio")
    for i, v in enumerate(acc):
        ax.text(i, v, f"{v:.4f}", ha="center", va="bottom", fontsize=8)
    rep.heading("Plots")
    rep.figure(fig, "Fraction of arrivals placed, per policy")
    primary = results[0].primary if results else ""
    label = "GPU" if primary == "devices" else primary
    active = _series_figure(results, "Active hosts", "hosts with at least one job", lambda r: r.active_hosts)
    rep.figure(active, "Hosts running at least one job over time")
    rep.figure(_series_figure(results, f"Allocated {label}", "fraction of capacity", _primary_alloc),
               f"Allocated {label} as a fraction of the fleet's {label}")
    rep.figure(_series_figure(results, f"{label} fragmentation", f"fragmented {label} / capacity",
                              lambda r: r.frag),
               f"Expected {label} that the workload's typical tasks cannot use (Weng et al. ATC'23 measure), "
               "as a fraction of capacity")
    if command:
        rep.text(f"Produced by: {command}")
    return rep
