"""The generic HTML report is ONE file: every image is an embedded PNG, nothing is fetched."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np

from poolvisor.reporting import Figure, Report, new_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _report_with_two_figures() -> Report:
    rep = Report("Test <report>", subtitle="a & b")
    rep.heading("Numbers").key_values([("energy_kwh", 163.47722), ("migrations", 27859), ("policy", "lr")])
    rep.table(["policy", "value"], [["thr", 0.5], ["iqr", float("nan")]], title="by policy")
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot(np.arange(10), np.arange(10) ** 2, label="x²")
    ax.legend()
    rep.figure(fig, caption="a parabola")
    rep.figure(Figure.from_matplotlib(fig, "again"))
    rep.text("first paragraph\n\nsecond <b>paragraph</b>")
    return rep


def test_report_is_self_contained_with_embedded_pngs(tmp_path: Path) -> None:
    out = _report_with_two_figures().write(tmp_path / "sub" / "r.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    imgs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(imgs) == 2
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_MAGIC) and len(png) > 1000
    # nothing external: no links, scripts or remote urls
    assert "<link" not in text and "<script" not in text
    assert not re.search(r'(src|href)="(?!data:)', text)
    assert "http://" not in text and "https://" not in text


def test_report_escapes_and_formats_cells() -> None:
    text = _report_with_two_figures().to_html()
    assert "Test &lt;report&gt;" in text and "a &amp; b" in text
    assert "second &lt;b&gt;paragraph&lt;/b&gt;" in text
    assert "27,859" in text and "163.477" in text
    assert "<td>–</td>" in text  # NaN shown as a dash
    assert text.count("<table>") == 2
    assert _report_with_two_figures().figure_count == 2
