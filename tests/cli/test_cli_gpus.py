"""GPU devices from the command line, against a real `poolvisor serve --placement fgd-ri`: hosts
declared with `--gpus`, fractional-GPU VMs placed on specific devices (shown by `vm create`, `vm
show` and `host show`), freed on delete; bad GPU input is one error line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_cli_serve import Server, one_error_line, run  # noqa: F401

from live_server import live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with live_server(tmp_path_factory.mktemp("serve-gpu"), "--placement", "fgd-ri",
                     "--controller-interval", "0", "--log-level", "warning", db=False) as live:
        yield Server(live.url, live.env, live.home, live.proc)


def test_gpu_hosts_and_fractional_vms(run: Callable[..., Any]) -> None:  # noqa: F811
    assert run("pool", "create", "gpu").returncode == 0
    r = run("host", "create", "g0", "--capacity", "vcpu=32,memory_mib=131072", "--pool", "gpu",
            "--gpus", "2xA100:40960")
    assert r.returncode == 0 and "0 A100 40960 MiB 0/1000 milli; 1 A100" in r.stdout, r.stdout + r.stderr
    assert run("host", "create", "g1", "--capacity", "vcpu=32,memory_mib=131072,gpu=1", "--pool",
               "gpu").returncode == 0
    placed = []
    for i, g in enumerate(("0.5", "0.25", "0.25")):
        r = run("vm", "create", f"v{i}", "--demand", f"vcpu=1,gpu={g}", "--pool", "gpu")
        assert r.returncode == 0 and "GPUs: " in r.stdout and " milli" in r.stdout, r.stdout + r.stderr
        placed.append(json.loads(run("vm", "show", f"v{i}", "--json").stdout))
    assert [w["gpus"][0]["milli"] for w in placed] == [500, 250, 250]
    r = run("vm", "show", "v0")
    assert r.returncode == 0 and f"{placed[0]['host']} GPU {placed[0]['gpus'][0]['device']}" in r.stdout
    held = sum(g["allocated_milli"] for h in ("g0", "g1")
               for g in json.loads(run("host", "show", h, "--json").stdout)["gpus"])
    assert held == 1000
    assert run("vm", "delete", "v0").returncode == 0
    held = sum(g["allocated_milli"] for h in ("g0", "g1")
               for g in json.loads(run("host", "show", h, "--json").stdout)["gpus"])
    assert held == 500
    r = run("check", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout


def test_bad_gpu_input_is_one_error_line(run: Callable[..., Any]) -> None:  # noqa: F811
    one_error_line(run("host", "create", "x", "--capacity", "vcpu=1", "--gpus", "2xA100:lots"), "--gpus")
    one_error_line(run("host", "create", "x", "--capacity", "vcpu=1,gpu=1.5"), "whole number of GPUs")
    one_error_line(run("vm", "create", "x", "--demand", "vcpu=1,gpu=1.5"), "fraction of one GPU")
    one_error_line(run("serve", "--placement", "tightest"), "unknown placement policy 'tightest'", "fgd-ri")
