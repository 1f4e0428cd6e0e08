"""Output of the API-client commands: Rich tables for people, JSON for scripts.

Everything shown comes from the server and is untrusted: `printable` makes it visible but inert
(control characters and bidi overrides as escapes), `table` and `say` also keep Rich from reading
it as markup, and `emit_json` keeps JSON output ASCII. Commands print only through these.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, emoji=False)

# C0 controls, DEL and C1 controls: shown as \x1b; bidi marks, embeddings, overrides and isolates
# (which reorder what follows them on screen): shown as \u202e.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_VISIBLE = {c: f"\\x{c:02x}" for c in _CONTROLS} | {c: f"\\u{c:04x}" for c in _BIDI}

SHORT = {"memory_mib": "mem_mib", "disk_gib": "disk_gib", "net_mbps": "net_mbps"}


def printable(value: Any) -> str:
    """`value` as text that cannot drive the terminal: a stored "\\x1b[2J" or "\\u202e" is shown as
    those escapes instead of clearing the screen or reversing the line. Not markup-safe by itself."""
    return str(value).translate(_VISIBLE)


def say(template: str, *values: Any) -> None:
    """Print a Rich-markup template whose `{}` slots are filled with `values` shown literally
    (printable, and markup such as "[bold]" in a value is escaped). Never put data in `template`."""
    console.print(template.format(*(escape(printable(v)) for v in values)))


def emit_json(obj: Any) -> None:
    """JSON for scripts: ensure_ascii writes every non-ASCII character (C1 controls, bidi
    overrides) as a \\u escape, json escapes C0 controls, and DEL (the one control json leaves
    raw) is escaped here; the output stays valid JSON with the same strings."""
    typer.echo(json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=True).replace("\x7f", "\\u007f"))


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
    A header may hold a line break ("vcpu\nalloc") to keep its column narrow. The title, headers
    (scorer names come from the server) and every cell are plain text (`printable`), never markup."""
    style: dict[str, Any] = {}
    if compact:  # columns two spaces apart, a rule under the header
        style = {"box": box.SIMPLE_HEAD, "pad_edge": False, "padding": (0, 0, 0, 1), "show_edge": False}
    t = Table(title=Text(printable(title)) if title else None, title_justify="left", header_style="bold",
              caption=Text(printable(caption)) if caption else None, caption_justify="left", **style)
    for c in columns:
        header = Text("\n".join(printable(line) for line in c.split("\n")))  # its own breaks stay
        if c in nowrap:
            t.add_column(header, no_wrap=True)
        else:  # never narrower than its header's longest word
            t.add_column(header, overflow="fold", min_width=max(map(len, c.split())) if c.strip() else None)
    n = 0
    for row in rows:
        t.add_row(*(Text(printable(v if isinstance(v, str) else num(v))) for v in row))
        n += 1
    if n == 0:
        say("[dim]no {}[/dim]", title.lower() if title else "rows")
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
        say("[dim]rule: {}[/dim]", expl["rule"])
    if expl.get("path"):
        say("[dim]decided by: {}[/dim]", expl["path"])
    if expl.get("detail") == "summary":
        say("[dim]summary: host-local filters counted together; --explain for each filter's "
            "rejections and reasons[/dim]")


def progress_bar(*, enabled: bool = True) -> Any:
    """A Rich progress bar (label, bar, percent, elapsed) on this module's console, removed when
    done; drawn only on a terminal and when `enabled` (not for JSON output)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not (enabled and console.is_terminal))


def bar_label(text: str) -> str:
    """Data shown as a progress bar's label: printable, markup escaped."""
    return escape(printable(text))
