"""`poolvisor backup-target`, `vm backup` and `backup schedule` against a real `poolvisor serve`:
a backup taken, its host killed (sim extension), the workload restored elsewhere; CLI errors are
one line on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_tasks import Served, one_error_line, seed


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    seed(str(tmp_path / "pv.db"), ("a", "b"))
    srv = Served(tmp_path, "--sim-admin")
    try:
        yield srv
    finally:
        srv.stop()


def test_backup_kill_the_host_restore_elsewhere(served: Served, tmp_path: Path) -> None:
    (tmp_path / "nas").mkdir()
    r = served.cli("backup-target", "add", "nas", str(tmp_path / "nas"))
    assert r.returncode == 0 and "backup target nas" in r.stdout, r.stderr
    r = served.cli("vm", "backup", "create", "a", "--project", "demo", "--name", "first")
    assert r.returncode == 0 and "backup first taken on" in r.stdout, (r.stdout, r.stderr)
    assert (tmp_path / "nas" / "demo" / "a" / "first.img").is_file()
    r = served.cli("vm", "backup", "list", "a", "--project", "demo", "--json")
    [b] = json.loads(r.stdout)
    host = b["host"]
    assert b["state"] == "ready" and len(b["sha256"]) == 64

    assert served.cli("sim", "fail", host).returncode == 0
    # (serve's HA loop may restart `a` itself meanwhile: restore a copy, which works either way)
    r = served.cli("vm", "backup", "restore", "a", "first", "--as", "a2", "--project", "demo", "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    assert t["state"] == "succeeded" and t["result"]["from_host"] == host and t["result"]["host"] != host, t

    assert t["result"]["workload"] == "demo/a2" and t["result"]["state"] == "running"
    one_error_line(served.cli("vm", "backup", "restore", "a", "first", "--as", "a2", "--project", "demo"),
                   "exists")
    one_error_line(served.cli("vm", "backup", "show", "a", "nope", "--project", "demo"), "no backup 'nope'")
    r = served.cli("backup", "schedule", "set", "b", "--project", "demo", "--every", "6h", "--keep", "3")
    assert r.returncode == 0 and "every 21600 s into nas, keeping 3" in r.stdout, (r.stdout, r.stderr)
    r = served.cli("backup", "schedule", "set", "b", "--every", "soon")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--every" in r.stderr
    r = served.cli("backup", "schedule", "list", "--json")
    assert [(s["scope"], s["name"], s["keep"]) for s in json.loads(r.stdout)] == [("workload", "b", 3)]
