"""Output of the API-client commands: Rich tables for people, JSON for scripts.

Everything shown comes from the server and is untrusted: `printable` makes it visible but inert
(control characters and bidi overrides as escapes), `table` and `say` also keep Rich from reading
it as markup, and `emit_json` keeps JSON output ASCII. Commands print only through these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import typer
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


def usage(allocated: dict[str, float], free: dict[str, float], resource: str) -> str:
    """"used/allocatable" for one resource of a host or pool."""
    if resource not in allocated:
        return "–"
    used = allocated[resource]
    total = used + free.get(resource, 0.0)
    return f"{num(used)}/{num(total)}"


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A Rich table; the title, headers (scorer names come from the server) and every cell are
    plain text (`printable`), never markup."""
    t = Table(title=Text(printable(title)) if title else None, title_justify="left", header_style="bold")
    for c in columns:
        t.add_column(Text(printable(c)), overflow="fold")
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
