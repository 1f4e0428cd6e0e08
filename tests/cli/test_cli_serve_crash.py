"""kill -9 of a real `poolvisor serve` in the middle of a create, a delete and a migration, then an
immediate restart: the stuck workloads are repaired within the dead server's lease plus one sweep
interval (not 30 s later), and afterwards nothing answers 409 "is placing; retry"."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_cli_serve import CLI, clean_env, free_port

from live_server import wait_healthy
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import open_services

LEASE_S, INTERVAL_S = 5.0, 2.0  # the serve defaults
SLACK_S = 2.0  # a loaded 2-core machine


def start_serve(db: str, env: dict[str, str], log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([*CLI, "serve", "--db", db, "--port", str(port),
                             "--controller-interval", "0", "--log-level", "warning",
                                 *extra], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url, log, poll=0.1)
    return proc, url


def states(db: str) -> dict[str, str]:
    s = open_services(db, repair=False)
    try:
        return {w.name: w.state for w in s.workloads.list_workloads("demo")}
    finally:
        s.close()


def repaired_at(db: str) -> list[float]:
    """Epoch times of the workload.repaired events (written in the repair's transaction)."""
    s = open_services(db, repair=False)
    try:
        return [e.time.timestamp() for e in s.events.list_events("demo") if e.kind == "workload.repaired"]
    finally:
        s.close()


def test_kill_9_of_serve_mid_operations_is_repaired_after_an_immediate_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "pv.db")
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    log = tmp_path / "serve.log"
    seed = open_services(db)
    seed_demo(seed, 3)
    seed.workloads.create_workload("demo", "doomed", flavor="small")
    seed.workloads.create_workload("demo", "mover", flavor="small")
    seed.close()

    # 1. a server whose sim operations take 60 s: three use cases stay in flight
    proc, url = start_serve(db, env, log, "--sim-durations", "create=60,delete=60,migrate=60")
    token = (home / ".config" / "poolvisor" / "token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, body: object = None) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
            httpx.request(method, f"{url}{path}", json=body, headers=auth, timeout=120)

    calls = [threading.Thread(target=call, args=a, daemon=True) for a in (
        ("POST", "/v1/workloads", {"name": "fresh", "flavor": "small", "project": "demo"}),
        ("DELETE", "/v1/workloads/doomed?project=demo"),
        ("POST", "/v1/workloads/mover/migrate?project=demo"))]
    for c in calls:
        c.start()
    deadline = time.monotonic() + 60
    while states(db) != {"fresh": "placing", "doomed": "deleting", "mover": "migrating"}:
        assert time.monotonic() < deadline, states(db)
        time.sleep(0.1)
    time.sleep(LEASE_S)  # long enough that only renewal keeps the leases alive (they would have lapsed)
    assert states(db) == {"fresh": "placing", "doomed": "deleting", "mover": "migrating"}

    # 2. kill -9, restart at once with the defaults
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed = time.time()
    proc2, url2 = start_serve(db, env, log)
    started = time.time() - killed
    try:
        while any(st in ("placing", "deleting", "migrating") for st in states(db).values()):
            assert time.time() - killed < 60, f"not repaired: {states(db)}\n{log.read_text()}"
            time.sleep(0.05)
        times = repaired_at(db)
        took = max(times) - killed
        print(f"stuck workloads repaired {took:.1f} s after kill -9 (restart took {started:.1f} s; "
              f"lease {LEASE_S:g} s + interval {INTERVAL_S:g} s)")
        # the dead server's leases lapse at most LEASE_S after the kill; the new one repairs at
        # start-up or at its next sweep (a restart slower than the lease repairs at start-up)
        assert len(times) == 3 and took < max(started, LEASE_S) + INTERVAL_S + SLACK_S, (times, took)
        assert states(db) == {"mover": "running"}  # fresh rolled back, doomed deleted, move confirmed
        assert log.read_text().count("poolvisor: repaired: ") == 3, log.read_text()
        r = httpx.delete(f"{url2}/v1/workloads/mover?project=demo", headers=auth, timeout=60)
        assert r.status_code == 204, r.text
        check = subprocess.run([*CLI, "check", "--db", db], env=env, capture_output=True, text=True,
                               timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(timeout=30)


def test_serve_defaults_match_the_services() -> None:
    from poolvisor.cli import serve
    from poolvisor.services import leases, sweeper

    assert serve.DEFAULT_LEASE_S == leases.DEFAULT_LEASE_S == LEASE_S
    assert serve.DEFAULT_REPAIR_INTERVAL_S == sweeper.DEFAULT_INTERVAL_S == INTERVAL_S


@pytest.mark.parametrize("args,fragment", [
    (("--lease", "0"), "--lease"), (("--lease", "nan"), "--lease"),
    (("--repair-interval", "-1"), "--repair-interval"),
    (("--repair-interval", "0.001"), "--repair-interval"),
    (("--sim-durations", "create=nan"), "--sim-durations"),
    (("--sim-durations", "boot=1"), "unknown operation"),
    (("--sim-durations", "create=-1"), "--sim-durations"),
])
def test_bad_repair_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: tuple[str, ...], fragment: str) -> None:
    from poolvisor.cli.entry import run_app
    from poolvisor.cli.errors import run_guarded
    from poolvisor.cli.main import app

    with pytest.raises(SystemExit) as e:  # the way `poolvisor` runs (cli.main.main): usage errors too
        run_guarded(lambda: run_app(app, ["serve", "--db", str(tmp_path / "x.db"), "--port", str(free_port()),
                                          *args]))
    err = capsys.readouterr().err
    assert e.value.code not in (0, None), err
    assert err.startswith("poolvisor: error: ") and err.count("\n") == 1, err
    assert fragment in err and not (tmp_path / "x.db").exists()
