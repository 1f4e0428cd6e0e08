"""`poolvisor pack` and `poolvisor bench packing`: JSON output checked feasible; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app
from poolvisor.policies.packing.feasibility import check_assignment
from poolvisor.traces.vbp import read_vbp

INSTANCE = "3\n100 100 100\n4\n50 20 30 2\n40 60 10 3\n10 10 60 2\n90 5 5 1\n"


def run(argv: list[str]) -> int:
    try:
        run_guarded(lambda: app(argv, standalone_mode=True))
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_pack_json_is_feasible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "t.vbp"
    f.write_text(INSTANCE)
    assert run(["pack", str(f), "--json", "--assignment", "--time-limit", "0.3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"bins", "lower_bound", "algo", "wall_s", "assignment"} <= set(out)
    inst = read_vbp(f)
    assert check_assignment(inst.items, inst.capacity, np.array(out["assignment"])) == out["bins"]
    assert out["lower_bound"] <= out["bins"]


def test_pack_table_and_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "t.vbp"
    f.write_text(INSTANCE)
    assert run(["pack", str(f), "--algo", "all", "--time-limit", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "bfd-dyn" in out and "bc-dot" in out and "lower bound" in out


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("2\n10 10\n1\n5 x 1\n", [], "t.vbp:4:"),
        (INSTANCE, ["--algo", "nope"], "unknown algorithm"),
        (INSTANCE, ["--time-limit", "-1"], "--time-limit"),
    ],
)
def test_pack_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                    args: list[str], message: str) -> None:
    f = tmp_path / "t.vbp"
    f.write_text(content)
    assert run(["pack", str(f), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("poolvisor: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bench_packing_on_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "class1_5_3_0.vbp").write_text(INSTANCE)
    (tmp_path / "class2_5_3_0.vbp").write_text(INSTANCE)
    known = tmp_path / "known.csv"
    known.write_text("instance_name\tLB\tOPT\tbest_overall\tbest_IC\tbest_BC\tbest_MB-Pairing\tbest_MB-WFD\n"
                     "class1_5_3_0\t3\t4\t4\t5\t4\t4\t5\nclass2_5_3_0\t3\t-1\t4\t4\t4\t4\t4\n")
    assert run(["bench", "packing", str(tmp_path), "--json", "--known", str(known), "--workers", "1",
                "--time-limit", "0.2", "--per-instance"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["instances"] == 2
    assert [r["class"] for r in out["by_class"]] == [1, 2]
    c1 = out["by_class"][0]
    assert c1["best_family"] in ("BC", "MB-Pairing")
    assert c1["ours_over_lb_pct"] == pytest.approx(100.0 * (out["results"][0]["bins"] - 3) / 3)
    assert "ours_over_opt_pct" not in out["by_class"][1]  # class 2 has no known optimum


def test_bench_packing_empty_selection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "class1_5_3_0.vbp").write_text(INSTANCE)
    assert run(["bench", "packing", str(tmp_path), "--classes", "7", "--workers", "1"]) == 1
    assert "no .vbp instances selected" in capsys.readouterr().err
