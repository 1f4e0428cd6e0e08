"""Packing benchmark: run the engine over a directory (or .tar.gz) of .vbp instances in a process pool
and compare, per class and per dimension, with the published results in Panigrahy_summary_known.csv.

The CSV (tab separated) has per instance: LB (published lower bound), OPT (-1 if unknown),
best_overall (the best result of any published algorithm on that instance) and best_<family> for the
heuristic families of Mommessin et al. (2024): IC (item-centric), BC (bin-centric), MB-Pairing and
MB-WFD (multi-bin). Each family column is already the per-instance best over many algorithms.
"% over LB" always uses the published LB, so our numbers and theirs share one denominator;
"% over OPT" is averaged over the instances whose optimum is known only.
"""

from __future__ import annotations

import csv
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.packing import cpsat
from poolvisor.policies.packing.feasibility import check_assignment
from poolvisor.policies.packing.registry import solve
from poolvisor.traces.vbp import iter_vbp_texts, parse_vbp

FAMILIES = ("IC", "BC", "MB-Pairing", "MB-WFD")
_NAME = re.compile(r"^class(\d+)_(\d+)_(\d+)_(\d+)$")


@dataclass(frozen=True)
class Known:
    lb: int
    opt: int  # -1 = unknown
    best_overall: int
    families: dict[str, int]


def read_known(path: str | Path) -> dict[str, Known]:
    p = Path(path)
    out: dict[str, Known] = {}
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        need = {"instance_name", "LB", "OPT", "best_overall", *(f"best_{f}" for f in FAMILIES)}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise InvalidInputError(f"{p}:1: missing columns {', '.join(sorted(missing))}")
        for row in reader:
            try:
                out[row["instance_name"]] = Known(
                    int(row["LB"]), int(row["OPT"]), int(row["best_overall"]),
                    {f: int(row[f"best_{f}"]) for f in FAMILIES},
                )
            except (TypeError, ValueError):
                raise InvalidInputError(f"{p}:{reader.line_num}: non-integer value") from None
    return out


def default_known(source: Path) -> Path | None:
    """Panigrahy_summary_known.csv next to the archive / directory (or its parent), if present."""
    for d in (source.parent, source, source.parent.parent):
        cand = d / "Panigrahy_summary_known.csv"
        if cand.exists():
            return cand
    return None


def parse_name(name: str) -> tuple[int, int, int]:
    """(class, items, dimensions) from names like class3_120_5_7; (0, 0, 0) if the pattern differs."""
    m = _NAME.match(name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (0, 0, 0)


def _solve_one(args: tuple[str, str, str, str, float, int]) -> dict[str, Any]:
    name, source, text, algo, time_limit, seed = args
    inst = parse_vbp(text, source, name)
    t0 = time.perf_counter()
    p = solve(inst.items, inst.capacity, algo, time_limit, seed=seed)
    wall = time.perf_counter() - t0  # includes the feasibility check inside solve
    check_assignment(inst.items, inst.capacity, p.assignment)
    cls, n, d = parse_name(name)
    return {"instance": name, "class": cls, "items": n or int(inst.items.shape[0]),
            "dimensions": d or int(inst.items.shape[1]), "bins": p.bins, "lower_bound": p.lower_bound,
            "optimal": p.optimal, "wall_s": wall, "first_stage": p.trace[0] if p.trace else algo}


def _warm_up() -> None:
    """Import the optional solver once per worker so its import time is not charged to one instance."""
    cpsat.available()


def select(instances: list[tuple[str, str, str]], classes: set[int] | None, limit: int | None,
           ) -> list[tuple[str, str, str]]:
    if classes:
        instances = [x for x in instances if parse_name(x[0])[0] in classes]
    if limit is not None and 0 < limit < len(instances):
        idx = np.unique(np.linspace(0, len(instances) - 1, limit).round().astype(int))
        instances = [instances[i] for i in idx]  # evenly spread over sorted names: every class and size
    return instances


def run(
    source: str | Path,
    *,
    algo: str = "best",
    time_limit: float = 1.0,
    classes: Iterable[int] | None = None,
    limit: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Solve every selected instance; one dict per instance (sorted by name)."""
    instances = select(list(iter_vbp_texts(source)), set(classes) if classes else None, limit)
    if not instances:
        raise InvalidInputError(f"{source}: no .vbp instances selected")
    jobs = [(n, s, t, algo, time_limit, seed) for n, s, t in instances]
    workers = workers or os.cpu_count() or 1
    out: list[dict[str, Any]] = []
    if workers == 1:
        _warm_up()
        for j in jobs:
            out.append(_solve_one(j))
            if progress:
                progress(len(out), len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_warm_up) as pool:
            for r in pool.map(_solve_one, jobs, chunksize=1):
                out.append(r)
                if progress:
                    progress(len(out), len(jobs))
    return sorted(out, key=lambda r: r["instance"])


def _pct(values: Sequence[float], refs: Sequence[float]) -> float:
    v, r = np.asarray(values, dtype=float), np.asarray(refs, dtype=float)
    return float(np.mean(100.0 * (v - r) / r)) if v.size else float("nan")


def summarize(results: list[dict[str, Any]], known: dict[str, Known] | None, key: str = "class",
              ) -> list[dict[str, Any]]:
    """Per group (class or dimensions): ours vs the published results, means in % over LB and OPT."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(int(r[key]), []).append(r)
    rows = []
    for g, rs in sorted(groups.items()):
        row: dict[str, Any] = {key: g, "instances": len(rs),
                               "mean_wall_s": float(np.mean([r["wall_s"] for r in rs])),
                               "proved_optimal": sum(bool(r["optimal"]) for r in rs)}
        ks = [known.get(r["instance"]) for r in rs] if known else []
        if known and all(k is not None for k in ks):
            kk = [k for k in ks if k is not None]
            lb = [k.lb for k in kk]
            ours = [r["bins"] for r in rs]
            row["ours_over_lb_pct"] = _pct(ours, lb)
            row["best_overall_over_lb_pct"] = _pct([k.best_overall for k in kk], lb)
            fam = {f: _pct([k.families[f] for k in kk], lb) for f in FAMILIES}
            best_f = min(fam, key=lambda f: fam[f])
            row["best_family"] = best_f
            row["best_family_over_lb_pct"] = fam[best_f]
            with_opt = [(r["bins"], k) for r, k in zip(rs, kk, strict=True) if k.opt > 0]
            row["known_opt"] = len(with_opt)
            if with_opt:
                opt = [k.opt for _, k in with_opt]
                row["ours_over_opt_pct"] = _pct([b for b, _ in with_opt], opt)
                row["best_overall_over_opt_pct"] = _pct([k.best_overall for _, k in with_opt], opt)
                row["best_family_over_opt_pct"] = _pct([k.families[best_f] for _, k in with_opt], opt)
            diff = np.array([r["bins"] - k.best_overall for r, k in zip(rs, kk, strict=True)])
            row["fewer_bins_than_best_overall"] = int((diff < 0).sum())
            row["equal"] = int((diff == 0).sum())
            row["more_bins"] = int((diff > 0).sum())
            row["total_bins"] = int(sum(ours))
            row["total_bins_best_overall"] = int(sum(k.best_overall for k in kk))
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], key: str, title: str) -> Any:
    """A Rich table of `summarize` rows."""
    from rich.table import Table

    def f(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"

    t = Table(title=title, caption="% over the published LB / over OPT (instances with known OPT); "
              "family = best published heuristic family, all = best of any published algorithm; "
              "</=/> = instances with fewer/equal/more bins than that best")
    for col in (key, "n", "ours/LB", "family", "fam/LB", "all/LB", "ours/OPT", "fam/OPT", "all/OPT",
                "</=/>", "s/inst"):
        t.add_column(col, justify="left" if col == "family" else "right")
    for r in rows:
        t.add_row("all" if key == "all" else str(r[key]), str(r["instances"]), f(r.get("ours_over_lb_pct")),
                  r.get("best_family", "-"),
                  f(r.get("best_family_over_lb_pct")), f(r.get("best_overall_over_lb_pct")),
                  f(r.get("ours_over_opt_pct")), f(r.get("best_family_over_opt_pct")),
                  f(r.get("best_overall_over_opt_pct")),
                  "/".join(str(r.get(k, "-")) for k in ("fewer_bins_than_best_overall", "equal",
                                                        "more_bins")),
                  f"{r['mean_wall_s']:.3f}")
    return t


def markdown(rows: list[dict[str, Any]], key: str) -> str:
    """The same comparison as `render`, as a Markdown table (for docs)."""

    def f(v: Any) -> str:
        return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"

    head = (f"| {key} | n | ours %>LB | best family | family %>LB | best overall %>LB | ours %>OPT "
            "| family %>OPT | overall %>OPT | fewer/equal/more vs overall | s/instance |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {'all' if key == 'all' else r[key]} | {r['instances']} | {f(r.get('ours_over_lb_pct'))} "
            f"| {r.get('best_family', '–')} "
            f"| {f(r.get('best_family_over_lb_pct'))} | {f(r.get('best_overall_over_lb_pct'))} "
            f"| {f(r.get('ours_over_opt_pct'))} | {f(r.get('best_family_over_opt_pct'))} "
            f"| {f(r.get('best_overall_over_opt_pct'))} | {r.get('fewer_bins_than_best_overall', '–')}/"
            f"{r.get('equal', '–')}/{r.get('more_bins', '–')} | {r['mean_wall_s']:.2f} |"
        )
    return "\n".join(lines)
