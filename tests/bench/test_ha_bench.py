"""`poolvisor bench ha`: a short run measures what it says (fenced, then running elsewhere once)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from poolvisor.bench import ha as bh
from poolvisor.cli.bench import app


def test_short_run_measures_detection_and_restart():
    res = bh.run(hosts=3, workloads=6, kills=1, interval_s=0.1, fail_after=3)
    r = res["rounds"][0]
    assert r["workloads"] >= 1 and res["restarted"] == r["workloads"]
    # declared after 3 missed heartbeats at 0.1 s: not before 0.2 s (the first miss may come at once)
    assert 0.2 <= r["declared_failed_s"] <= r["running_elsewhere_s"] < 5
    assert res["check_ok"] and res["rejoined_all"]


def test_cli_json_and_bad_interval():
    argv = ["ha", "--hosts", "2", "--workloads", "2", "--kills", "1", "--interval", "0.1", "--json"]
    out = CliRunner().invoke(app, argv)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["running_elsewhere_s_max"] is not None
    bad = CliRunner().invoke(app, ["ha", "--interval", "0"])
    assert bad.exit_code != 0
