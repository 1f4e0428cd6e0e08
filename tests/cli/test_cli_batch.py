"""`poolvisor vm create-batch` and `poolvisor pool consolidate` against a real `poolvisor serve`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from test_cli_serve import Server, one_error_line, run, server  # noqa: F401 - fixtures for this module


def active(cli: Callable[..., Any]) -> dict[str, int]:
    hosts = json.loads(cli("host", "list", "--json").stdout)
    return {h["name"]: h["workloads"] for h in hosts if h["workloads"]}


def test_create_batch_and_consolidate(server: Server, run: Callable[..., Any]) -> None:  # noqa: F811
    r = run("vm", "create-batch", "--flavor", "small", "--count", "4", "--prefix", "web", "--project",
            "demo", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "Batch placement" in r.stdout and "web-4" in r.stdout and "lower bound" in r.stdout
    assert json.loads(run("vm", "list", "--json").stdout) == []
    r = run("vm", "create-batch", "--flavor", "small", "--count", "4", "--prefix", "web", "--project",
            "demo", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [w["name"] for w in out["workloads"]] == ["web-1", "web-2", "web-3", "web-4"]
    assert len({w["host"] for w in out["workloads"]}) == out["plan"]["hosts_after"] == 1
    one_error_line(run("vm", "create-batch", "--flavor", "nope", "--count", "2", "--project", "demo"),
                   "nope")
    # spread them over 4 hosts, then consolidate back
    hosts = sorted(h["name"] for h in json.loads(run("host", "list", "--json").stdout))
    for i in range(4):
        cur = json.loads(run("vm", "show", f"web-{i + 1}", "--project", "demo", "--json").stdout)["host"]
        if cur != hosts[i]:
            assert run("vm", "migrate", f"web-{i + 1}", "--to", hosts[i], "--project", "demo").returncode == 0
    assert len(active(run)) == 4
    r = run("pool", "consolidate", "demo")
    assert r.returncode == 0, r.stderr
    assert "Consolidation of pool demo (plan only)" in r.stdout and "hosts emptied" in r.stdout
    assert len(active(run)) == 4
    r = run("pool", "consolidate", "demo", "--policy", "nope")
    assert r.returncode != 0 and "unknown balancing policy" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("pool", "consolidate", "demo", "--policy", "spread", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["plan"]["policy"] == "spread", r.stderr
    r = run("pool", "consolidate", "demo", "--apply", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["applied"] and plan["failed"] == [] and len(plan["hosts_emptied"]) == 3
    assert len(active(run)) == 1
    chk = server.cli("check", "--db", str(server.home.parent / "pv.db"), "--json")
    assert chk.returncode == 0, chk.stdout + chk.stderr
    report = json.loads(chk.stdout)
    assert report["ok"] and 4 in report["counts"].values(), report
