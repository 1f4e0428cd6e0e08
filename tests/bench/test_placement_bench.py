"""`poolvisor bench placement`: a small run prints consistent figures; bad options are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from poolvisor.bench import placement as bp
from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app
from poolvisor.domain.models import GroupPolicy, HostState


def test_cluster_and_requests_have_the_advertised_mix() -> None:
    st = bp.build_cluster(2000, seed=3)
    assert st.n == 2000
    gpu = st.labels.mask("gpu", "yes", st.n)
    assert 0.05 < gpu.mean() < 0.15 and np.all(st.capacity[4][gpu] > 0)
    assert 0.05 < st.labels.mask("ssd", "yes", st.n).mean() < 0.15
    assert np.all(st.allocated <= st.capacity) and np.any(st.allocated > 0)
    assert (st.state != HostState.UP).any()
    reqs = bp.make_requests(st, 3000, seed=4)
    gpu_reqs = [r for r in reqs if r.demand[4] > 0]
    assert gpu_reqs and all(r.required_labels == {"gpu": "yes"} for r in gpu_reqs)
    grouped = [r for r in reqs if r.group]
    assert 0.05 < len(grouped) / len(reqs) < 0.25
    assert all(r.group_policy in (GroupPolicy.ANTI_AFFINITY, GroupPolicy.DOMAIN_SPREAD) for r in grouped)
    sizes: dict[str, int] = {}
    for r in grouped:
        sizes[r.group or ""] = sizes.get(r.group or "", 0) + 1
    assert set(sizes.values()) <= {3, 4, 5}


def test_cli_json_run_is_consistent_and_exact(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "placement", "--hosts", "1500", "--requests", "1500", "--verify", "60",
            "--floor-requests", "100", "--churn", "0.2", "--json"]
    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: app(argv, standalone_mode=True))
    assert e.value.code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mismatches"] == 0 and res["verified"] == 60
    assert res["placed"] + res["unplaced"] == 1500 and res["releases"] > 0
    assert res["ratio_to_floor"] == pytest.approx(res["scan_floor_per_s"] / res["placements_per_s"], rel=1e-3)
    idx = res["index"]
    assert idx["tree"] + idx["row_scan"] + idx["full_scan"] == 1500
    assert idx["tree"] > 1400  # the index, not a scan, decided nearly everything
    # the served path (create_workload's decision function) chose the same hosts, from the index
    assert res["served_mismatches"] == 0 and res["served_per_s"] > 0 and res["served_per_cpu_s"] > 0
    cpu_us = 1e6 * res["served_cpu_seconds"] / 1500
    assert res["us_cpu_per_served"] == pytest.approx(cpu_us, rel=0.02, abs=0.02)
    served = res["served_index"]
    assert served["tree"] + served["row_scan"] + served["full_scan"] == 1500 and served["tree"] > 1400
    assert res["served_full_explanations"] == res["unplaced"]


@pytest.mark.parametrize(("args", "message"), [
    (["--hosts", "0"], "--hosts"),
    (["--churn", "1.5"], "--churn"),
    (["--floor-requests", "0"], "--floor-requests"),
])
def test_bad_options_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: app(["bench", "placement", *args], standalone_mode=True))
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("poolvisor: error: ") and message in err and err.count("\n") == 1
