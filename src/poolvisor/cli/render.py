"""Output of the API-client commands: Rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

console = Console(highlight=False)

SHORT = {"memory_mib": "mem_mib", "disk_gib": "disk_gib", "net_mbps": "net_mbps"}


def emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=False))


def num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() else f"{v:.3g}"
    return "–" if v is None or v == "" else str(v)


def amounts(d: dict[str, float] | None) -> str:
    """{"vcpu": 2, "memory_mib": 4096} -> "vcpu 2, mem_mib 4096" (zeros left out)."""
    if not d:
        return "–"
    return ", ".join(f"{SHORT.get(k, k)} {num(v)}" for k, v in d.items() if v) or "0"


MIB_PER_GIB = 1024.0


def _scaled(d: dict[str, float], resource: str) -> float:
    v = float(d.get(resource, 0.0))
    return v / MIB_PER_GIB if resource == "memory_mib" else v


def allocated_of(allocated: dict[str, float], free: dict[str, float], resource: str) -> str:
    """"allocated of allocatable" for one resource of a host or pool, e.g. "12 of 64" (memory in GiB)."""
    if resource not in allocated:
        return "–"
    used = _scaled(allocated, resource)
    return f"{num(used)} of {num(used + _scaled(free, resource))}"


def free_of(free: dict[str, float], resource: str) -> str:
    return num(_scaled(free, resource)) if resource in free else "–"


def measured(obj: dict[str, Any], resource: str = "vcpu") -> str:
    """Measured use: "–" unknown, "≥x" when some running workloads have no sample yet."""
    used = obj.get("used")
    if not used or resource not in used:
        return "–"
    v = num(float(used[resource]))
    return f"≥{v}" if obj.get("measured_workloads", 0) < obj.get("running_workloads", 0) else v


def measured_note(obj: dict[str, Any]) -> str:
    """The measured use of a host or pool in words, for `show`."""
    n, k = obj.get("running_workloads", 0), obj.get("measured_workloads", 0)
    if not obj.get("used"):
        return f"unknown: none of {n} running workload(s) has a recorded sample"
    if n == 0:
        return "vcpu 0 (no running workload)"
    at = str(obj.get("used_at") or "")[:16].replace("T", " ")
    return f"vcpu {measured(obj)} ({k} of {n} running workload(s) measured; latest sample {at} UTC)"


CAPACITY_CAPTION = ("alloc: allocated of allocatable (capacity × overcommit); free: allocatable − "
                    "allocated; used: measured CPU (latest sample × vCPUs of each running workload; "
                    "– not measured, ≥ some workloads not measured); memory in GiB")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          nowrap: Collection[str] = (), compact: bool = False, caption: str | None = None) -> None:
    """A Rich table; cells fold to fit the terminal, except in the `nowrap` columns (names, kinds:
    never broken mid-word; the others give way). `compact` draws no vertical rules, for wide rows.
    A header may hold a line break ("vcpu\nalloc") to keep its column narrow."""
    style: dict[str, Any] = {}
    if compact:  # columns two spaces apart, a rule under the header
        style = {"box": box.SIMPLE_HEAD, "pad_edge": False, "padding": (0, 0, 0, 1), "show_edge": False}
    t = Table(title=title, title_justify="left", header_style="bold", caption=caption,
              caption_justify="left", **style)
    for c in columns:
        if c in nowrap:
            t.add_column(c, no_wrap=True)
        else:  # never narrower than its header's longest word
            t.add_column(c, overflow="fold", min_width=max(map(len, c.split())) if c.strip() else None)
    n = 0
    for row in rows:
        t.add_row(*(num(v) if not isinstance(v, str) else v for v in row))
        n += 1
    if n == 0:
        console.print(f"[dim]no {title.lower() if title else 'rows'}[/dim]")
        return
    console.print(t)


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{r} {c}" for r, c in sorted(reasons.items(), key=lambda x: -x[1])) or "–"


def explanation(expl: dict[str, Any] | None) -> None:
    """Why this host: each filter's rejections (count, dominant reason), then the top candidates."""
    if not expl:
        return
    filters = expl.get("filters", [])
    table(f"Filters ({expl.get('hosts_considered', '?')} hosts considered)",
          ("filter", "rejected", "reasons", "remaining"),
          [(f["filter"], f["rejected"], _reasons(f.get("reasons", {})), f["remaining"]) for f in filters])
    top = expl.get("top") or []
    if top:
        scorers = list(top[0].get("scores", {}))
        table(f"Top candidates ({expl.get('candidates', len(top))} passed the filters)",
              ("host", "score", *scorers),
              [(c["host"], f"{c['score']:.4f}", *(f"{c['scores'].get(s, 0.0):.4f}" for s in scorers))
               for c in top])
    if expl.get("rule"):
        console.print(f"[dim]rule: {expl['rule']}[/dim]")
