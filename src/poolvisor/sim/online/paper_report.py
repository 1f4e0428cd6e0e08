"""Tables and the HTML report of the FGD paper setup: median unallocated GPU % per policy against the
published figures, and the Figure 9a plot (unallocated GPU % against arrived workload %)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from poolvisor.reporting import Report, new_figure
from poolvisor.sim.online.paper import PUBLISHED, PaperResult


def at_key(x: float) -> str:
    """'100', '130', '99.5': the JSON key of an arrived percentage."""
    return f"{x:g}"


def summary(res: PaperResult) -> dict[str, Any]:
    """JSON-ready: medians per policy and point, the paper's figures where it has one, per seed."""
    med = {p: {at_key(x): _num(res.median(p, x)) for x in res.at} for p in res.policies}
    paper = {}
    for p in res.policies:
        if p in PUBLISHED:
            pub = dict(zip((100.0, 130.0), PUBLISHED[p], strict=True))
            paper[p] = {at_key(x): pub[x] for x in res.at if x in pub}
    return {
        "seeds": res.seeds,
        "at": [_num(x) for x in res.at],
        "load": res.load,
        "unallocated_pct": med,
        "paper_unallocated_pct": paper,
        "per_seed": {p: {at_key(x): [_num(v) for v in res.per_seed(p, x)] for x in res.at}
                     for p in res.policies},
        "placed": {p: [int(r.placed.sum()) for r in res.runs[p]] for p in res.policies},
        "arrivals": [int(r.placed.size) for r in res.runs[res.policies[0]]] if res.policies else [],
        "wall_s": {p: round(res.wall_s(p), 2) for p in res.policies},
    }


def rows(res: PaperResult) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows: policy, then per point: ours (median), the paper's, ours - paper."""
    cols = ["policy"]
    for x in res.at:
        cols += [f"{at_key(x)}% ours", f"{at_key(x)}% paper", "diff"]
    cols += ["wall s"]
    out = []
    for p in res.policies:
        row: list[Any] = [p]
        pub = dict(zip((100.0, 130.0), PUBLISHED[p], strict=True)) if p in PUBLISHED else {}
        for x in res.at:
            v = res.median(p, x)
            ref = pub.get(x)
            diff: Any = round(v - ref, 2) if ref is not None and v == v else "–"  # NaN: nothing near x
            row += [v if v == v else "–", ref if ref is not None else "–", diff]
        row.append(round(res.wall_s(p), 1))
        out.append(row)
    return cols, out


def paper_report(res: PaperResult, description: str, command: str = "") -> Report:
    rep = Report("FGD paper setup: unallocated GPU on the Alibaba 2023 trace", subtitle=description)
    rep.heading("Median over seeds, against the paper (Figure 9a)")
    cols, body = rows(res)
    rep.table(cols, body)
    rep.heading("Figure 9a: unallocated GPU against arrived workload")
    top = max(res.load * 100.0, max(res.at))
    xs = np.arange(0.0, math.floor(top) + 1.0)
    fig = new_figure(9.0, 4.0)
    ax = fig.add_subplot()
    for p in res.policies:
        ax.plot(xs, res.curve(p, xs), label=p, lw=1.6)
    ax.plot([0, 100], [100, 0], ls=":", color="grey", label="ideal")
    ax.set_xlim(75, top)
    ax.set_ylim(0, 25)
    ax.set_xlabel("arrived workload (% of the cluster's GPU capacity)")
    ax.set_ylabel("unallocated GPU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    rep.figure(fig, f"Median over {len(res.seeds)} seeds ({_seed_text(res.seeds)}) of the unallocated GPU "
                    "at each arrived percentage, averaged over the arrivals within +-0.5 %")
    per = [[p, *[", ".join(f"{v:.2f}" for v in res.per_seed(p, x)) for x in res.at]] for p in res.policies]
    rep.table(["policy", *[f"{at_key(x)}% per seed" for x in res.at]], per, title="Per seed")
    if command:
        rep.text(f"Produced by: {command}")
    return rep


def _seed_text(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ",".join(str(s) for s in seeds)


def _num(v: float) -> float | None:
    return None if v != v else float(v)
