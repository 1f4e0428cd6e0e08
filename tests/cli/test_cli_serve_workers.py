"""`poolvisor serve --workers N`: N processes answer on one port over one database; the
supervisor restarts a worker that dies, stops them all on SIGTERM, and they stop without it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from live_server import live_server
from poolvisor.bench.api import children


def _all_answer(url: str, headers: dict[str, str], pids: set[int], tries: int = 400) -> bool:
    """Whether fresh connections reach every process of `pids` and no other (`me` of /v1/leader
    names the server that answered: host:pid:id@address)."""
    seen: set[int] = set()
    for _ in range(tries):
        with httpx.Client(timeout=10) as c:  # a new connection each time: the kernel picks a worker
            seen.add(_pid_of(c.get(f"{url}/v1/leader", headers=headers).json()["me"]))
        assert seen <= pids
        if seen == pids:
            return True
    return False


def _wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _pid_of(me: str) -> int:
    return int(me.split("@")[0].split(":")[1])


def test_two_workers_share_the_port_one_leads_and_a_dead_one_is_started_again(tmp_path: Path):
    with live_server(tmp_path, "--workers", "2", "--demo", "4", "--ha-interval", "0") as live:
        sup = live.proc.pid
        assert _wait(lambda: len(children(sup)) == 2)
        workers = set(children(sup))
        assert _all_answer(live.url, live.headers, workers)  # both answer, and only they
        status = httpx.get(f"{live.url}/v1/leader", headers=live.headers).json()
        assert status["election"] and _pid_of(status["leader"].split("@")[0] + "@") in workers
        # creations through both land in the one database
        for i in range(6):
            with httpx.Client(timeout=30) as c:
                r = c.post(f"{live.url}/v1/workloads", headers=live.headers,
                           json={"name": f"w{i}", "flavor": "small", "project": "demo"})
                assert r.status_code == 201, r.text
        names = {w["name"] for w in httpx.get(f"{live.url}/v1/workloads?project=demo",
                                              headers=live.headers).json()}
        assert {f"w{i}" for i in range(6)} <= names

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        assert _wait(lambda: len(children(sup)) == 2 and victim not in children(sup))
        assert "exited with status -9; starting it again" in live.log.read_text()
        assert _wait(lambda: httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200)
        now = set(children(sup))
        assert _all_answer(live.url, live.headers, now)
        os.kill(sup, signal.SIGTERM)
        assert live.proc.wait(timeout=30) == 0  # every worker drained and stopped cleanly
        assert _wait(lambda: all(not Path(f"/proc/{p}").exists() for p in now), 10)


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path):
    with live_server(tmp_path, "--workers", "2", "--ha-interval", "0") as live:
        sup = live.proc.pid
        assert _wait(lambda: len(children(sup)) == 2)
        workers = children(sup)
        os.kill(sup, signal.SIGKILL)
        live.proc.wait(timeout=10)
        # each notices it was orphaned and stops gracefully, freeing the port
        assert _wait(lambda: all(not Path(f"/proc/{p}").exists() or
                                 Path(f"/proc/{p}/stat").read_text().split(")")[1].split()[0] == "Z"
                                 for p in workers), 30)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{live.url}/healthz", timeout=2)
