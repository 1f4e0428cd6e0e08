"""`poolvisor host drain|undrain` against a real `poolvisor serve`: the CLI waits for the drain
task, a drain that cannot finish is a table of the stuck workloads with their reasons plus one
error line, `--no-wait` prints the task id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_tasks import Served, one_error_line, queued_id, seed

MIGRATE_S = 1.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    seed(str(tmp_path / "pv.db"), ("a", "b", "c"))  # one small workload on each of 3 demo hosts
    srv = Served(tmp_path, "--sim-durations", f"migrate={MIGRATE_S:g}")
    try:
        yield srv
    finally:
        srv.stop()


def host_state(served: Served, name: str) -> str:
    return str(json.loads(served.cli("host", "show", name, "--json").stdout)["state"])


def test_drain_waits_then_undrain(served: Served) -> None:
    t0 = time.monotonic()
    r = served.cli("host", "drain", "demo-000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("host demo-000: drained (1 workload(s) moved), now in maintenance"), r.stdout
    assert time.monotonic() - t0 >= MIGRATE_S  # it waited for the move
    assert host_state(served, "demo-000") == "maintenance"
    a = json.loads(served.cli("vm", "show", "a", "--project", "demo", "--json").stdout)
    assert a["host"] != "demo-000"
    one_error_line(served.cli("host", "undrain", "demo-001"), "is up, not draining")
    r = served.cli("host", "undrain", "demo-000")
    assert r.returncode == 0 and r.stdout == "host demo-000: up\n", r.stdout + r.stderr
    tid = queued_id(served.cli("host", "drain", "demo-000", "--no-wait"))
    done = json.loads(served.cli("task", "wait", str(tid), "--json").stdout)
    assert done["kind"] == "drain" and done["state"] == "succeeded", done
    one_error_line(served.cli("host", "drain", "nope"), "not found")


def test_a_drain_that_cannot_finish_names_the_stuck_workloads(served: Served) -> None:
    for h in ("demo-001", "demo-002"):
        assert served.cli("host", "state", h, "maintenance").returncode == 0
    r = served.cli("host", "drain", "demo-000")
    one_error_line(r, "failed", "host demo-000 stays draining", "demo/a: no valid host")
    assert "workloads that cannot move" in r.stdout, r.stdout
    assert "demo/a" in r.stdout and "host maintenance" in r.stdout, r.stdout
    assert host_state(served, "demo-000") == "draining"
    r = served.cli("host", "undrain", "demo-000")
    assert r.returncode == 0 and host_state(served, "demo-000") == "up"
