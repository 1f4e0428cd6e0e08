"""The simulator's drf uses the projects' fair-share weights (`--project-weights FILE`), through
the same policies/queueing.order the live queue calls; the weights file's errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli_run import run_cli
from conftest import require_shared_data
from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies import queueing
from poolvisor.sim.online.engine import replay
from poolvisor.sim.online.fleet import Fleet
from poolvisor.sim.online.policies import make_policy
from poolvisor.sim.online.weights import load_weights
from poolvisor.traces.workload import Workload


def trace() -> Workload:
    """One 4-cpu host held by project z until t=10; projects a and b each queue four 1-cpu jobs
    (alternating arrivals from t=1), each running 100 s."""
    arrival = np.array([0.0, *np.arange(1.0, 9.0)])
    run = np.array([10.0, *[100.0] * 8])
    demand = np.array([[4.0], *[[1.0]] * 8])
    project = np.array([2, 0, 1, 0, 1, 0, 1, 0, 1])
    return Workload("w", ("cpu",), arrival, arrival + run, demand, project=project,
                    project_names=("a", "b", "z"), rank=np.full(9, 2))


def mean_waits(weights: np.ndarray | None) -> dict[str, float]:
    """Each project's mean wait under drf with these weights (None: 1 each)."""
    r = replay(Fleet(["h0"], ("cpu",), np.array([[4.0]])), trace(), make_policy("first-fit"), queue="drf",
               weights=weights, check=True)
    assert r.accepted == 9
    return {p: r.queue["by_project"][p]["mean_wait"] for p in ("a", "b")}


def test_weights_shift_the_first_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real = queueing.order

    def spy(discipline: str, p: queueing.Pending, **kw: Any) -> np.ndarray:
        seen.append(kw.get("weights"))
        return real(discipline, p, **kw)

    monkeypatch.setattr(queueing, "order", spy)
    even = mean_waits(None)
    assert seen and all(w is None for w in seen)
    seen.clear()
    heavy = mean_waits(np.array([3.0, 1.0, 1.0]))
    assert seen and all(w is not None and w.tolist() == [3.0, 1.0, 1.0] for w in seen)  # the one core
    # 1:1 splits the four freed slots 2/2; 3:1 gives a three: a waits less, b more
    assert even["a"] == pytest.approx(even["b"], abs=1.0)
    assert heavy["a"] < even["a"] - 20 and heavy["b"] > even["b"] + 20


def test_weights_files(tmp_path: Path) -> None:
    j = tmp_path / "w.json"
    j.write_text('{\n  "a": 3,\n  "b": 0.5\n}\n')
    w = load_weights(j)
    assert w.weights == {"a": 3.0, "b": 0.5}
    assert w.vector(("b", "c", "a")).tolist() == [0.5, 1.0, 3.0]  # unnamed: 1, as live projects
    assert w.report(("a", "c")) == {"file": str(j), "named": 2, "in_trace": 1, "not_in_trace": ["b"]}
    c = tmp_path / "w.csv"
    c.write_text("# weights\nproject,weight\n\na, 2\nb,1e-3\n")
    assert load_weights(c).weights == {"a": 2.0, "b": 0.001}
    bad = {
        "x.csv": ("project,weight\na,2\nb,zero\n", "x.csv:3:", "not a number"),
        "neg.csv": ("a,2\n\nb,-1\n", "neg.csv:3:", "(0, 1e+06]"),
        "dup.csv": ("a,1\na,2\n", "dup.csv:2:", "named twice"),
        "cols.csv": ("a,1,2\n", "cols.csv:1:", "expected 'project,weight'"),
        "empty.csv": ("# nothing\n", "empty.csv:", "no 'project,weight'"),
        "big.csv": ("a,1e7\n", "big.csv:1:", "(0, 1e+06]"),
        "nan.json": ('{\n "a": 1,\n "b": NaN\n}', "nan.json:3:", "(0, 1e+06]"),
        "str.json": ('{"a": "2"}', "str.json:1:", "project 'a'"),
        "bool.json": ('{\n"a": true}', "bool.json:2:", "not True"),
        "dup.json": ('{"a": 1,\n"a": 2}', "dup.json:1:", "named twice"),
        "list.json": ("[1, 2]", "list.json:", "JSON object"),
        "broken.json": ('{\n"a": 1,\n', "broken.json:3:", "not valid JSON"),
    }
    for name, (text, where, why) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidInputError) as e:
            load_weights(tmp_path / name)
        assert where in e.value.message and why in e.value.message, (name, e.value.message)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_weights(tmp_path / "missing.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidInputError, match="UTF-8"):
        load_weights(tmp_path / "bin.csv")


def test_simulate_google_with_project_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = require_shared_data("google-2011-samples")
    f = tmp_path / "w.csv"
    f.write_text("project,weight\nnobody-in-the-trace,2\n")
    assert run_cli(["simulate", "google", str(d), "-p", "first-fit", "--queue", "drf", "--project-weights",
                    str(f), "--json"]) == 0
    q = json.loads(capsys.readouterr().out)["results"][0]["queue"]
    assert q["weights"] == {"file": str(f), "named": 1, "in_trace": 0,
                            "not_in_trace": ["nobody-in-the-trace"]}
    assert run_cli(["simulate", "google", str(d), "-p", "first-fit", "--queue", "drf", "--project-weights",
                    str(f)]) == 0
    assert "drf weights from" in capsys.readouterr().out
    for extra, why in ((["--queue", "fifo"], "--queue drf"), ([], "--queue drf")):
        assert run_cli(["simulate", "google", str(d), "--project-weights", str(f), *extra]) != 0
        err = capsys.readouterr().err.strip()
        assert why in err and "\n" not in err and "Traceback" not in err
    f.write_text("a,1\nb,heavy\n")
    assert run_cli(["simulate", "google", str(d), "--queue", "drf", "--project-weights", str(f)]) != 0
    err = capsys.readouterr().err.strip()
    assert f"{f}:2:" in err and "\n" not in err


def test_weights_files_by_the_live_rule(tmp_path: Path) -> None:
    """The file's weights follow the live projects' check (one rule, policies/queueing.py), its
    numbers are decimals as written (not what Python's float() also reads), names collide as
    stripped, and a CSV line number is the physical line even after a quoted multi-line field."""
    from poolvisor.policies.queueing import check_weight
    from poolvisor.services.catalog import check_weight as live

    assert live is check_weight
    bad = {
        "under.csv": ("a,1_000\n", "under.csv:1:", "not a number"),
        "inf.csv": ("a,inf\n", "inf.csv:1:", "not a number"),
        "arabic.csv": ("a,\u0663\n", "arabic.csv:1:", "not a number"),
        "quoted.csv": ('"x\ny",2\n"b",-1\n', "quoted.csv:3:", "(0, 1e+06]"),
        "strip.json": ('{"a": 1,\n " a": 2}', "strip.json:2:", "named twice"),
    }
    for name, (text, where, why) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidInputError) as e:
            load_weights(tmp_path / name)
        assert where in e.value.message and why in e.value.message, (name, e.value.message)
    ok = tmp_path / "ok.csv"
    ok.write_text('"multi\nline",2\nb,+.5e1\n')
    assert load_weights(ok).weights == {"multi\nline": 2.0, "b": 5.0}
