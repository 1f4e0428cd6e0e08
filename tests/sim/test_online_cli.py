"""`poolvisor simulate alibaba|azure|google` end to end on small slices: table, JSON, HTML report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli_run import run_cli
from conftest import require_shared_data


def test_alibaba_json_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = require_shared_data("alibaba-gpu-2023")
    out = tmp_path / "r.html"
    code = run_cli(["simulate", "alibaba", str(d), "--mode", "fill", "--load", "0.05", "--policy",
                    "first-fit,fgd", "--json", "--report", str(out), "--samples", "20"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trace"] == "alibaba" and [r["policy"] for r in doc["results"]] == ["first-fit", "fgd"]
    for r in doc["results"]:
        assert r["accepted"] + r["rejected"] == r["jobs"] == doc["jobs"] > 0
        assert 0 <= r["acceptance"] <= 1 and r["frag_primary"] == "devices"
    html = out.read_text()
    assert html.count("<img") >= 4 and "data:image/png;base64," in html and "fgd" in html


def test_azure_table(capsys: pytest.CaptureFixture[str]) -> None:
    d = require_shared_data("azure-v1-flavour-arrivals")
    assert run_cli(["simulate", "azure", str(d), "--hosts", "30", "--limit-bins", "3", "-p", "best-fit"]) == 0
    out = capsys.readouterr().out
    assert "best-fit" in out and "30 hosts" in out and "alloc" in out


def test_azure_mixed_fleet_json(capsys: pytest.CaptureFixture[str]) -> None:
    d = require_shared_data("azure-v1-flavour-arrivals")
    code = run_cli(["simulate", "azure", str(d), "--fleet", "64x512:10,32x128:10", "--limit-bins", "2", "-p",
                    "worst-fit", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert "20 hosts" in doc["scenario"] and doc["results"][0]["hosts_up_mean"] == 20


def test_google_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    require_shared_data("google-2011-samples")
    assert run_cli(["simulate", "google", "--json", "-p", "all"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out  # strict JSON: "never rejected" is null
    doc = json.loads(out)
    assert len(doc["results"]) == 5 and all(r["accepted"] == 11 for r in doc["results"])
    assert all(r["first_rejection"] is None for r in doc["results"])


def test_bad_input_is_one_line_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = require_shared_data("alibaba-gpu-2023")
    for f in ("openb_node_list_all_node.csv", "openb_pod_list_default.csv"):
        shutil.copy(src / f, tmp_path / f)
    pods = tmp_path / "openb_pod_list_default.csv"
    lines = pods.read_text().splitlines()
    lines[2] = lines[2].replace(",1,", ",x,", 1)
    pods.write_text("\n".join(lines) + "\n")
    assert run_cli(["simulate", "alibaba", str(tmp_path), "--json"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("poolvisor: error: ") and f"{pods}:3:" in err and "\n" not in err
    assert run_cli(["simulate", "azure", str(tmp_path / "nope")]) == 1
    assert "not found" in capsys.readouterr().err
    assert run_cli(["simulate", "google", "--policy", "nope"]) == 1
    assert "unknown online policy" in capsys.readouterr().err
