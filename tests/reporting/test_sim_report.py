"""Simulation reports: one self-contained HTML file with the time series and per-policy charts."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.report import write_simulation_report
from poolvisor.sim.result import SimResult


def _result(policy: str, param: float | None, energy: float, migrations_per_step: int) -> SimResult:
    t = np.arange(1, 289) * 300.0
    active = (400 + 100 * np.sin(t / 86400 * 2 * np.pi)).astype(np.int64)
    mig = np.full(288, migrations_per_step, dtype=np.int64)
    return SimResult(
        policy=policy, param=param, compat=None, trace="20110303", seed=0,
        metrics={"energy_kwh": energy, "migrations": int(mig.sum()), "slatah": 0.05, "pdm": 0.001,
                 "slav": 5e-5, "esv": energy * 5e-5, "hosts": 800, "vms": 1052, "wall_s": 0.8},
        time_s=t, active_hosts=active, power_w=active * 120.0,
        sla_violation=np.linspace(0, 0.1, 288), migrations=mig, rules={"overload:thr": 7, "underload": 3},
    )


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_single_run_report_has_series_plots(tmp_path: Path) -> None:
    out = write_simulation_report(_result("thr-mmt", 0.8, 190.0, 2), tmp_path / "r.html")
    html = out.read_text()
    imgs = _images(html)
    assert len(imgs) == 4  # active hosts, power, SLA violation, cumulative migrations
    assert all(i.startswith(b"\x89PNG") for i in imgs)
    assert "thr-mmt-0.8" in html and "overload:thr" in html and "energy_kwh" in html
    assert not re.search(r'(src|href)="(?!data:)', html)


def test_comparison_report_has_per_policy_charts(tmp_path: Path) -> None:
    runs = [
        _result("thr-mmt", 0.8, 190.0, 2),
        _result("lr-mmt", 1.2, 163.0, 1),
        _result("dvfs", None, 802.0, 0),
    ]
    html = write_simulation_report(runs, tmp_path / "c.html").read_text()
    # 6 metrics present (energy, migrations, slatah, pdm, slav, esv) + 3 series + migrations
    assert len(_images(html)) == 6 + 3 + 1
    for label in ("thr-mmt-0.8", "lr-mmt-1.2", "dvfs"):
        assert label in html


def test_run_without_series_still_reports_metrics(tmp_path: Path) -> None:
    r = SimResult(policy="npa", param=None, compat="cloudsim", trace="d", metrics={"energy_kwh": 2410.8})
    html = write_simulation_report(r, tmp_path / "n.html").read_text()
    assert "2,410.8" in html and not _images(html)
    with pytest.raises(InvalidInputError):
        write_simulation_report([], tmp_path / "none.html")
