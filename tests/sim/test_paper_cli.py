"""`poolvisor simulate alibaba --setup paper`: JSON shape, table, HTML report, bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_run import run_cli
from conftest import require_shared_data


def test_paper_setup_json_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = require_shared_data("alibaba-gpu-2023")
    out = tmp_path / "fig9a.html"
    code = run_cli(["simulate", "alibaba", str(d), "--setup", "paper", "--seeds", "42", "--at", "100,130",
                    "--policy", "best-fit,random", "--json", "--report", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["setup"] == "paper" and doc["seeds"] == [42] and doc["report"] == str(out)
    assert set(doc["unallocated_pct"]) == {"best-fit", "random"}
    for pol, v in doc["unallocated_pct"].items():
        assert set(v) == {"100", "130"} and all(0 < x < 30 for x in v.values()), pol
        assert len(doc["per_seed"][pol]["130"]) == 1
    assert doc["paper_unallocated_pct"]["best-fit"] == {"100": 7.09, "130": 6.89}
    assert abs(doc["unallocated_pct"]["best-fit"]["100"] - 7.09) < 1.0
    assert doc["unallocated_pct"]["random"]["130"] > doc["unallocated_pct"]["best-fit"]["130"]
    html = out.read_text()
    assert "data:image/png;base64," in html and "Figure 9a" in html and "best-fit" in html


def test_paper_setup_table(capsys: pytest.CaptureFixture[str]) -> None:
    require_shared_data("alibaba-gpu-2023")
    argv = ["simulate", "alibaba", "--setup", "paper", "--seeds", "43", "--at", "100", "-p", "dotprod"]
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "dotprod" in out and "100% paper" in out and "9.44" in out and "1,213 GPU nodes" in out


@pytest.mark.parametrize("argv, message", [
    (["--setup", "paper", "--seeds", "4x"], "bad seed list"),
    (["--setup", "paper", "--at", "100,abc"], "bad --at value"),
    (["--setup", "paper", "--mode", "fill"], "do not apply to --setup paper"),
    (["--setup", "paper", "-p", "first-fit"], "unknown policy 'first-fit'"),
    (["--setup", "nope"], "use default or paper"),
    (["--setup", "paper", "--load", "0"], "must be > 0"),
    (["--seeds", "1-3"], "need --setup paper"),
])
def test_paper_setup_bad_input_is_one_line(argv: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    require_shared_data("alibaba-gpu-2023")
    assert run_cli(["simulate", "alibaba", *argv]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert err.startswith("poolvisor: error: ") and len(err.splitlines()) == 1
