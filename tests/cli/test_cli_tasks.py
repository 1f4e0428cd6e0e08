"""Tasks against a real `poolvisor serve`: the CLI waits with a progress bar, `--no-wait` prints the
id, `task list|show|wait`; kill -9 in the middle of a migration and of a consolidation, then a
restart: both tasks end resumed (succeeded), nothing is orphaned and `poolvisor check` is clean."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_cli_serve import CLI, clean_env
from test_cli_serve_crash import start_serve

from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services

MIGRATE_S = 8.0  # longer than a CLI process takes to start on a loaded machine


def seed(db: str, names: tuple[str, ...]) -> None:
    """The demo pool (3 hosts) with one small workload per host."""
    s = open_services(db)
    try:
        seed_demo(s, 3)
        spread(s, names)
    finally:
        s.close()


def spread(s: Services, names: tuple[str, ...]) -> None:
    hosts = sorted(h.name for h in s.hosts.list_hosts())
    for name, host in zip(names, hosts, strict=False):
        w = s.workloads.create_workload("demo", name, flavor="small")
        if w.host != host:
            s.workloads.migrate_workload("demo", name, host)


class Served:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.db = str(tmp / "pv.db")
        self.home = tmp / "home"
        self.home.mkdir(exist_ok=True)
        self.env = clean_env(self.home)
        self.log = tmp / "serve.log"
        self.proc, self.url = start_serve(self.db, self.env, self.log, *extra)
        self.env["POOLVISOR_URL"] = self.url

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=self.env, capture_output=True, text=True, timeout=180)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    seed(str(tmp_path / "pv.db"), ("a", "b", "c"))
    srv = Served(tmp_path, "--sim-durations", f"migrate={MIGRATE_S:g}")
    try:
        yield srv
    finally:
        srv.stop()


def one_error_line(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("poolvisor: error: ") and r.stderr.count("\n") == 1, r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


def queued_id(r: subprocess.CompletedProcess[str]) -> int:
    assert r.returncode == 0, r.stderr
    m = re.search(r"task (\d+) queued", r.stdout)
    assert m is not None, r.stdout
    return int(m.group(1))


def test_the_cli_waits_for_tasks_and_follows_them(served: Served) -> None:
    t0 = time.monotonic()
    r = served.cli("vm", "migrate", "a", "--project", "demo")
    took = time.monotonic() - t0
    assert r.returncode == 0 and "demo/a: migrated" in r.stdout, r.stdout + r.stderr
    assert took >= MIGRATE_S, took  # it waited for the (slow) sim migration

    tid = queued_id(served.cli("vm", "migrate", "a", "--project", "demo", "--no-wait"))
    # read over HTTP: the 8 s migration must still run when `task wait --timeout` starts below,
    # and each CLI process start costs seconds on a loaded machine (`task list` has its own test)
    token = (served.home / ".config" / "poolvisor" / "token").read_text().strip()
    running = httpx.get(f"{served.url}/v1/tasks", headers={"Authorization": f"Bearer {token}"}).json()
    assert [t["state"] for t in running if t["id"] == tid] in (["queued"], ["running"]), running
    one_error_line(served.cli("task", "wait", str(tid), "--timeout", "0.2"), "still", f"task show {tid}")
    r = served.cli("task", "wait", str(tid))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"task {tid} (migrate workload/demo/a) succeeded\n", r.stdout  # no bar off a terminal
    r = served.cli("task", "show", str(tid))
    assert r.returncode == 0 and "succeeded" in r.stdout and "moving a:" in r.stdout, r.stdout
    r = served.cli("task", "list", "--state", "succeeded")
    assert r.returncode == 0 and r.stdout.count("workload/demo/a") == 2, r.stdout

    cid = queued_id(served.cli("pool", "consolidate", "demo", "--apply", "--no-wait"))
    done = served.cli("task", "wait", str(cid), "--json")
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert task["kind"] == "consolidate" and task["state"] == "succeeded" and task["result"]["failed"] == []
    r = served.cli("pool", "consolidate", "demo", "--apply")  # nothing left to move: waits, succeeds
    assert r.returncode == 0 and "executed 0 migration(s)" in r.stdout, r.stdout + r.stderr

    one_error_line(served.cli("task", "show", "99999"), "task 99999 not found")
    one_error_line(served.cli("task", "wait", "99999"), "not found")
    r = served.cli("task", "list", "--state", "done")
    assert r.returncode == 2 and r.stderr.startswith("poolvisor: error: ") and "--state" in r.stderr, r.stderr
    served.stop()
    chk = served.cli("check", "--db", served.db, "--json")
    assert chk.returncode == 0 and json.loads(chk.stdout)["counts"]["tasks_active"] == 0, chk.stdout


def test_a_failed_task_is_one_error_line(served: Served) -> None:
    token = (served.home / ".config" / "poolvisor" / "token").read_text().strip()
    for h in ("demo-001", "demo-002"):  # nowhere to go: placement fails inside the task
        r = httpx.put(f"{served.url}/v1/hosts/{h}/state", json={"state": "maintenance"},
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    a_host = json.loads(served.cli("vm", "show", "a", "--project", "demo", "--json").stdout)["host"]
    assert a_host == "demo-000"
    one_error_line(served.cli("vm", "migrate", "a", "--project", "demo"), "failed")


def test_kill_9_mid_tasks_then_restart_resumes_them(tmp_path: Path) -> None:
    seed(str(tmp_path / "pv.db"), ("a", "b", "c"))
    srv = Served(tmp_path, "--sim-durations", "migrate=60")
    mig = queued_id(srv.cli("vm", "migrate", "a", "--project", "demo", "--no-wait"))
    deadline = time.monotonic() + 60
    # 0.05: the move committed (capacity on the target) and the driver's migration runs; the task's
    # progress then follows the driver's (60 s here)
    while json.loads(srv.cli("task", "show", str(mig), "--json").stdout)["progress"] < 0.05:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    con = queued_id(srv.cli("pool", "consolidate", "demo", "--apply", "--no-wait"))
    while True:  # its first move is in flight
        children = [t for t in json.loads(srv.cli("task", "list", "--json").stdout) if t["parent"] == con]
        if children and children[0]["progress"] >= 0.05:
            break
        assert time.monotonic() < deadline, children
        time.sleep(0.2)

    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=30)
    check = srv.cli("check", "--db", srv.db, "--json")  # right after the kill: the leases still run
    if check.returncode != 0:  # unless the CLI started after they expired (a loaded machine): then
        # only the killed server's moves and tasks are reported, each as a lease awaiting repair
        found = json.loads(check.stdout)["violations"]
        assert found and all("lease" in v and "expired" in v and (
            "is stuck migrating" in v or f"task {mig} " in v or f"task {con} " in v) for v in found), found
    srv2 = Served(tmp_path)  # the defaults: sim operations are instant again
    try:
        deadline = time.monotonic() + 60
        while True:
            states = {t["id"]: t["state"] for t in json.loads(srv2.cli("task", "list", "--json").stdout)}
            if states[mig] not in ("queued", "running") and states[con] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, f"{states}\n{srv2.log.read_text()}"
            time.sleep(0.2)
        assert states[mig] == states[con] == "succeeded", states
        con_task = json.loads(srv2.cli("task", "show", str(con), "--json").stdout)
        assert con_task["result"]["failed"] == []
        assert any("resumed" in e["message"] for e in con_task["entries"]), con_task
        assert not [s for s in states.values() if s in ("queued", "running")], states
        print(f"after kill -9 and restart: tasks {states}")
    finally:
        srv2.stop()
    chk = srv2.cli("check", "--db", srv2.db, "--json")
    report = json.loads(chk.stdout)
    assert chk.returncode == 0 and report["ok"] and report["counts"]["tasks_active"] == 0, chk.stdout


def test_the_progress_bar_follows_the_task_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from poolvisor.cli import render, task

    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, force_terminal=True, width=120))
    monkeypatch.setattr(task, "POLL_S", 0.0)
    base = {"id": 7, "kind": "consolidate", "subject": "pool/demo", "error": None}
    hostile = [{"message": "move 1/2: \x1b[2J"}]  # a stored control sequence is shown, not obeyed
    steps = iter([{**base, "state": "running", "progress": 0.5, "entries": hostile},
                  {**base, "state": "succeeded", "progress": 1.0, "entries": [{"message": "succeeded"}]}])

    class FakeApi:
        def get(self, path: object) -> dict[str, object]:
            assert getattr(path, "text", None) == "/v1/tasks/7"  # through api_path
            return next(steps)

    final = task.wait_for(FakeApi(), {**base, "state": "queued", "progress": 0.0, "entries": []})  # type: ignore[arg-type]
    assert final["state"] == "succeeded"
    drawn = out.getvalue()
    assert "task 7 consolidate pool/demo" in drawn and "%" in drawn and "\x1b[2J" not in drawn, drawn


def test_task_cancel_aborts_a_migration_and_sim_commands_need_the_extension(served: Served) -> None:
    before = json.loads(served.cli("vm", "show", "a", "--project", "demo", "--json").stdout)["host"]
    tid = queued_id(served.cli("vm", "migrate", "a", "--project", "demo", "--no-wait"))
    r = served.cli("task", "cancel", str(tid))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"task {tid} (migrate workload/demo/a) cancelled\n", r.stdout
    t = json.loads(served.cli("task", "show", str(tid), "--json").stdout)
    assert t["state"] == "cancelled" and t["progress"] < 1
    after = json.loads(served.cli("vm", "show", "a", "--project", "demo", "--json").stdout)
    assert (after["host"], after["state"]) == (before, "running")
    one_error_line(served.cli("task", "cancel", str(tid)), "already cancelled")
    # this server runs without --demo / --sim-admin: no fault injection API
    one_error_line(served.cli("sim", "fail", "demo-000"), "no sim admin API", "--sim-admin")
