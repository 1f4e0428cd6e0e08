"""`poolvisor simulate planetlab --contention shares` and `simulate azure|google --queue` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_run import run_cli
from conftest import require_shared_data


def _day(tmp_path: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(1)
    d = tmp_path / "day"
    d.mkdir()
    vals = np.clip(rng.integers(30, 90, size=(n, 1)) + rng.integers(-15, 30, size=(n, 288)), 0, 100)
    for i in range(n):
        (d / f"vm {i:03d}").write_text("\n".join(str(x) for x in vals[i]) + "\n")
    return d


def test_planetlab_shares_contention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _day(tmp_path)
    runs = {}
    for extra in ([], ["--contention", "shares", "--reserve", "0.5"]):
        code = run_cli(["simulate", "planetlab", str(d), "--hosts", "20", "-p", "thr-mmt", "--param", "1.0",
                        "--json", *extra])
        assert code == 0
        runs[bool(extra)] = json.loads(capsys.readouterr().out)
    assert runs[False]["sla_overall"] > 0 and runs[True]["sla_overall"] != runs[False]["sla_overall"]
    bads = (["--reserve", "0.5"], ["--contention", "lottery"], ["--contention", "shares", "--reserve", "2"],
            ["--contention", "shares", "--compat", "cloudsim"])
    for bad in bads:
        assert run_cli(["simulate", "planetlab", str(d), "--hosts", "20", *bad]) != 0
        err = capsys.readouterr().err.strip()
        assert err and "\n" not in err and "Traceback" not in err


def test_azure_queue_reports_waits(capsys: pytest.CaptureFixture[str]) -> None:
    d = require_shared_data("azure-v1-flavour-arrivals")
    code = run_cli(["simulate", "azure", str(d), "--hosts", "2", "--limit-bins", "4", "-p", "best-fit",
                    "--json", "--queue", "fifo"])
    assert code == 0
    r = json.loads(capsys.readouterr().out)["results"][0]
    q = r["queue"]
    assert q["discipline"] == "fifo" and q["all"]["waited"] > 0 and q["all"]["served"] > 0
    assert q["by_class"]["normal"]["waited"] == q["all"]["waited"]
    assert r["accepted"] + r["rejected"] == r["jobs"]
    assert run_cli(["simulate", "azure", str(d), "--hosts", "2", "--limit-bins", "1", "--queue",
                    "lottery"]) != 0
    assert "lottery" in capsys.readouterr().err


def test_google_queue_table_has_classes(capsys: pytest.CaptureFixture[str]) -> None:
    require_shared_data("google-2011-samples")
    assert run_cli(["simulate", "google", "-p", "first-fit", "--queue", "drf"]) == 0
    out = capsys.readouterr().out
    assert "queue (drf)" in out and "class high" in out  # the sample's tasks are all priority 9


def test_traces_carry_projects_and_classes() -> None:
    from poolvisor.sim.online import scenarios as sc
    from poolvisor.traces.alibaba import qos_rank
    from poolvisor.traces.google import priority_rank

    assert priority_rank(np.array([-1, 0, 1, 2, 8, 9, 10, 11])).tolist() == [2, 0, 0, 2, 2, 3, 3, 4]
    assert qos_rank(np.array(["Guaranteed", "LS", "Burstable", "BE", ""], dtype=object)).tolist() == \
        [3, 2, 1, 0, 2]
    d = require_shared_data("google-2011-samples")
    wl = sc.google(d).workload
    assert set(wl.project_names) == {"RyCO/1PCdI6fV/w+5a72xg=", "Xalks/empsl1000/0tursl="}
    assert set(wl.rank.tolist()) == {3}  # the sample's tasks are all priority 9 (production)
