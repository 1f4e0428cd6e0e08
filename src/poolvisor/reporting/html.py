"""One HTML file per report: no external CSS, scripts or image files, so it can be mailed or archived.

Figures are rendered with matplotlib's object API (`matplotlib.figure.Figure` + Agg canvas), never
pyplot, so building reports is safe in worker threads and does not depend on a display backend.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib loads in ~0.2 s: imported when a figure is made, not with the CLI
    from matplotlib.figure import Figure as MplFigure

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{color:#335;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:right}
th{background:#eef}td.t,th.t{text-align:left}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
img{max-width:100%;height:auto}.meta{color:#777;font-size:.85em}p.note{color:#444}
"""


def new_figure(width: float = 8.0, height: float = 3.6) -> MplFigure:
    """A matplotlib Figure with an Agg canvas attached (no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: MplFigure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v == 0 or 1e-3 <= abs(v) < 1e6:
            return f"{v:.4g}" if abs(v) < 1 else f"{v:,.3f}".rstrip("0").rstrip(".")
        return f"{v:.3e}"
    return str(v)


@dataclass
class Table:
    """A titled table; numeric cells are right-aligned, text cells left-aligned."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""

    def to_html(self) -> str:
        def cls(v: Any) -> str:
            return "" if isinstance(v, int | float) and not isinstance(v, bool) else ' class="t"'

        head = "".join(f'<th class="t">{html.escape(str(c))}</th>' for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td{cls(v)}>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
            for row in self.rows
        )
        cap = f"<h3>{html.escape(self.title)}</h3>" if self.title else ""
        return f"{cap}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Figure:
    """A figure already rendered to PNG, embedded as a base64 data URI."""

    png: bytes
    caption: str = ""

    @classmethod
    def from_matplotlib(cls, fig: MplFigure, caption: str = "", dpi: int = 100) -> Figure:
        return cls(figure_png(fig, dpi), caption)

    def to_html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        alt = html.escape(self.caption or "figure")
        cap = f"<figcaption>{html.escape(self.caption)}</figcaption>" if self.caption else ""
        return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{cap}</figure>'


@dataclass
class _Heading:
    text: str

    def to_html(self) -> str:
        return f"<h2>{html.escape(self.text)}</h2>"


@dataclass
class _Text:
    text: str

    def to_html(self) -> str:
        return "".join(f'<p class="note">{html.escape(p)}</p>' for p in self.text.split("\n\n") if p)


@dataclass
class Report:
    """Build with add_* calls in display order, then `write(path)` or `to_html()`."""

    title: str
    subtitle: str = ""
    blocks: list[Any] = field(default_factory=list)

    def heading(self, text: str) -> Report:
        self.blocks.append(_Heading(text))
        return self

    def text(self, text: str) -> Report:
        self.blocks.append(_Text(text))
        return self

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> Report:
        self.blocks.append(Table(list(columns), [list(r) for r in rows], title))
        return self

    def key_values(self, items: Iterable[tuple[str, Any]], title: str = "") -> Report:
        """A two-column table (name, value), e.g. a run's metrics."""
        return self.table(["name", "value"], [[k, v] for k, v in items], title)

    def figure(self, fig: MplFigure | Figure, caption: str = "") -> Report:
        self.blocks.append(fig if isinstance(fig, Figure) else Figure.from_matplotlib(fig, caption))
        return self

    @property
    def figure_count(self) -> int:
        return sum(isinstance(b, Figure) for b in self.blocks)

    def to_html(self) -> str:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        sub = f"<p>{html.escape(self.subtitle)}</p>" if self.subtitle else ""
        body = "\n".join(b.to_html() for b in self.blocks)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{sub}\n{body}\n"
            f'<p class="meta">Generated by poolvisor on {stamp}.</p></body></html>\n'
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report atomically-enough (temp file + rename) and return the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.to_html(), encoding="utf-8")
        tmp.replace(p)
        return p
