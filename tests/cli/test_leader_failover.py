"""Leader election across real processes: two `poolvisor serve` on one throwaway PostgreSQL; exactly
one leads, SIGKILL of the leader hands leadership to the other within the lease (+ slack), and a
SIGTERM (graceful stop) hands it over at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from test_cli_serve import CLI, clean_env
from test_cli_serve_crash import start_serve

LEADER_LEASE_S = 5.0  # the serve default
SLACK_S = 3.0  # one follower poll (<= 1 s) plus a loaded 2-core machine

def status(url: str, auth: dict[str, str]) -> dict[str, object] | None:
    try:
        r = httpx.get(f"{url}/v1/leader", headers=auth, timeout=2)
    except httpx.HTTPError:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_leader(urls: list[str], auth: dict[str, str], limit_s: float) -> tuple[str, float]:
    """The url of the one server that leads (asserting never two at once), and when it was seen."""
    t0 = time.monotonic()
    while True:
        leading = [u for u in urls if (st := status(u, auth)) is not None and st["is_leader"]]
        assert len(leading) <= 1, f"two leaders at once: {leading}"
        if leading:
            return leading[0], time.monotonic() - t0
        assert time.monotonic() - t0 < limit_s, "no leader"
        time.sleep(0.1)


@pytest.mark.real
def test_sigkill_of_the_leader_hands_over_within_the_lease(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    log = tmp_path / "serve.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pa, ua = start_serve(pg_url, env, log)
        procs.append(pa)
        auth = {"Authorization": "Bearer " + (home / ".config" / "poolvisor" / "token").read_text().strip()}
        pb, ub = start_serve(pg_url, env, log)
        procs.append(pb)
        first, _ = wait_leader([ua, ub], auth, 10)
        assert first == ua  # the first server found no lease and took it; the second follows
        sa, sb = status(ua, auth), status(ub, auth)
        assert sa is not None and sb is not None
        assert sa["leader"] == sb["leader"] == sa["me"] and sb["is_leader"] is False
        shown = subprocess.run([*CLI, "leader", "--url", ub], env=env, capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0 and "(a follower)" in shown.stdout and str(sa["me"]) in shown.stdout, \
            shown.stdout + shown.stderr
        # still one leader after several renewals
        time.sleep(LEADER_LEASE_S)
        assert wait_leader([ua, ub], auth, 1)[0] == ua

        os.kill(pa.pid, signal.SIGKILL)
        pa.wait(timeout=30)
        killed = time.monotonic()
        second, _ = wait_leader([ub], auth, LEADER_LEASE_S + SLACK_S + 10)
        took = time.monotonic() - killed
        print(f"leader SIGKILLed: the other server leads {took:.1f} s later (lease {LEADER_LEASE_S:g} s)")
        assert second == ub and took < LEADER_LEASE_S + SLACK_S, took
        sb = status(ub, auth)
        assert sb is not None and sb["term"] == 2 and sb["leader"] == sb["me"]

        # a graceful stop releases the lease: a third server leads at once
        pc, uc = start_serve(pg_url, env, log)
        procs.append(pc)
        assert wait_leader([ub, uc], auth, 5)[0] == ub
        pb.send_signal(signal.SIGTERM)
        pb.wait(timeout=30)
        stopped = time.monotonic()
        assert wait_leader([uc], auth, 10)[0] == uc
        handed = time.monotonic() - stopped
        print(f"leader stopped (SIGTERM): the third server leads {handed:.1f} s later")
        assert handed < 3.0, handed  # one follower look (<= 1 s) + a loaded machine
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()


@pytest.mark.parametrize("value", ["0.5", "301", "nan"])
def test_bad_leader_lease_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    from test_cli_serve import free_port

    from poolvisor.cli.entry import run_app
    from poolvisor.cli.errors import run_guarded
    from poolvisor.cli.main import app

    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: run_app(app, ["serve", "--db", str(tmp_path / "x.db"), "--port", str(free_port()),
                                          "--leader-lease", value]))
    err = capsys.readouterr().err
    assert e.value.code not in (0, None), err
    assert err.startswith("poolvisor: error: ") and err.count("\n") == 1, err
    assert "--leader-lease" in err and not (tmp_path / "x.db").exists()


def test_serve_default_matches_the_service() -> None:
    from poolvisor.cli import serve
    from poolvisor.services import leader

    assert serve.DEFAULT_LEADER_LEASE_S == leader.DEFAULT_LEADER_LEASE_S == LEADER_LEASE_S
