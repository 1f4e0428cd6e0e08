"""Against a real `poolvisor serve --log-format json` on loopback: the event stream (server-sent
events read with httpx, resumed with Last-Event-ID, scoped per caller), `poolvisor events
--follow`, and JSON log lines carrying request ids."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_server import CLI, Live, live_server
from poolvisor.cli.events import parse_sse


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(tmp_path_factory.mktemp("observe"), "--demo", "4", "--log-format", "json",
                     "--alert-interval", "0.2", "--controller-interval", "0", stop_timeout=30) as srv:
        yield srv


class Reader:
    """Reads a stream in a thread, collecting its events, until closed."""

    def __init__(self, url: str, headers: dict[str, str], **params: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self.content_type = ""
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers, params), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "stream did not open"

    def _run(self, url: str, headers: dict[str, str], params: dict[str, Any]) -> None:
        try:
            with self._client.stream("GET", f"{url}/v1/events/stream", headers=headers, params=params) as r:
                self.status, self.content_type = r.status_code, r.headers.get("content-type", "")
                self._ready.set()
                for e in parse_sse(r.iter_lines()):
                    self.events.append(e)
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._ready.set()

    def wait_for(self, pred: Any, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(pred(e) for e in self.events):
                return self.events
            time.sleep(0.05)
        raise AssertionError(f"no matching event among {self.events}")

    def close(self) -> None:
        self._client.close()
        self._thread.join(5)


def _create(live: Live, project: str, name: str) -> None:
    r = httpx.post(f"{live.url}/v1/workloads", headers=live.headers,
                   json={"name": name, "flavor": "small", "project": project})
    assert r.status_code == 201, r.text


def test_stream_delivers_new_events_and_resumes(live: Live) -> None:
    reader = Reader(live.url, live.headers, kind="workload")
    try:
        assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
        _create(live, "demo", "s1")
        _create(live, "demo", "s2")
        evs = reader.wait_for(lambda e: e["subject"] == "workload/demo/s2"
                              and e["kind"] == "workload.created")
        assert all(e["kind"].startswith("workload.") for e in evs)  # the filter holds
        ids = [e["id"] for e in evs]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    finally:
        reader.close()
    first = next(e for e in evs if e["subject"] == "workload/demo/s1")
    # a reconnect with Last-Event-ID gets what came after it, in order, once
    again = Reader(live.url, {**live.headers, "Last-Event-ID": str(first["id"])}, kind="workload")
    try:
        got = again.wait_for(lambda e: e["subject"] == "workload/demo/s2" and e["kind"] == "workload.created")
        assert got[0]["id"] > first["id"] and [e["id"] for e in got] == [i for i in ids if i > first["id"]]
    finally:
        again.close()


def test_stream_is_scoped_to_the_members_project(live: Live) -> None:
    r = httpx.post(f"{live.url}/v1/projects", headers=live.headers, json={"name": "acme"})
    assert r.status_code in (201, 409), r.text
    tok = httpx.post(f"{live.url}/v1/tokens", headers=live.headers,
                     json={"role": "member", "project": "acme"}).json()["token"]
    member = {"Authorization": f"Bearer {tok}"}
    reader = Reader(live.url, member)
    try:
        _create(live, "demo", "hidden1")
        _create(live, "acme", "mine1")
        evs = reader.wait_for(lambda e: e["subject"] == "workload/acme/mine1"
                              and e["kind"] == "workload.created")
        assert {e["project"] for e in evs} == {"acme"}
    finally:
        reader.close()
    r = httpx.get(f"{live.url}/v1/events/stream", headers=member, params={"project": "demo"})
    assert r.status_code == 404
    assert httpx.get(f"{live.url}/v1/events/stream").status_code == 401
    assert httpx.get(f"{live.url}/v1/events/stream", headers=live.headers,
                     params={"severity": "loud"}).status_code == 422


def test_events_follow_prints_new_events(live: Live) -> None:
    proc = subprocess.Popen([*CLI, "events", "--follow", "--json", "--kind", "workload", "--limit", "1"],
                            env=live.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # the CLI prints the newest event, then follows
        _create(live, "demo", "followed1")
        lines: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(json.loads(line))
            if lines[-1]["subject"] == "workload/demo/followed1" and lines[-1]["kind"] == "workload.created":
                break
        assert any(e["subject"] == "workload/demo/followed1" for e in lines), lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)  # a loaded machine: interpreter teardown is slow
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 130 and "Traceback" not in err, (proc.returncode, err)  # Ctrl-C


def test_json_log_lines_carry_request_ids(live: Live) -> None:
    r = httpx.get(f"{live.url}/v1/pools", headers={**live.headers, "X-Request-ID": "live-req-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "live-req-42"
    bad = httpx.get(f"{live.url}/v1/pools/no-such-pool", headers=live.headers)
    rid = bad.headers["x-request-id"]
    assert bad.json()["request_id"] == rid
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(x) for x in live.log.read_text().splitlines() if x.startswith("{")]
        mine = [x for x in lines if x.get("request_id") in ("live-req-42", rid)]
        if len(mine) >= 2:
            break
        time.sleep(0.1)
    assert {(x["path"], x["status"]) for x in mine if x["logger"] == "poolvisor.access"} == \
        {("/v1/pools", 200), ("/v1/pools/no-such-pool", 404)}
    # every line the server wrote is JSON (uvicorn's own lines too), except the CLI's start-up notes
    raw = [x for x in live.log.read_text().splitlines() if x.strip()]
    assert all(x.startswith("{") or x.startswith("poolvisor: ") for x in raw), raw
    assert not any("color_message" in x or "\x1b[" in x for x in raw)  # no terminal colour codes


def test_alerts_end_to_end(live: Live) -> None:
    """A failed host raises a critical alert (evaluated by serve's loop), streamed as an event;
    `poolvisor alert list` shows it, `alert ack` acknowledges it; reviving the host resolves it."""
    hosts = httpx.get(f"{live.url}/v1/hosts", headers=live.headers).json()
    victim = hosts[-1]["name"]
    reader = Reader(live.url, live.headers, kind="alert")
    try:
        assert httpx.post(f"{live.url}/v1/sim/hosts/{victim}/fail", headers=live.headers).status_code == 200
        evs = reader.wait_for(lambda e: e["kind"] == "alert.raised" and e["subject"] == f"host/{victim}")
        raised = next(e for e in evs if e["subject"] == f"host/{victim}")
        assert raised["severity"] == "critical"
    finally:
        reader.close()
    r = subprocess.run([*CLI, "alert", "list", "--json"], env=live.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    (alert,) = [a for a in json.loads(r.stdout) if a["subject"] == f"host/{victim}"]
    r = subprocess.run([*CLI, "alert", "ack", str(alert["id"])], env=live.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "acknowledged" in r.stdout, r.stderr
    r = subprocess.run([*CLI, "alert", "list"], env=live.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "host_down" in r.stdout and "acked" in r.stdout, r.stdout
    r = subprocess.run([*CLI, "alert", "ack", "999999"], env=live.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("poolvisor: error: ") and r.stderr.count("\n") == 1
    assert httpx.put(f"{live.url}/v1/hosts/{victim}/state", headers=live.headers,
                     json={"state": "up"}).status_code == 200
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = httpx.get(f"{live.url}/v1/alerts/{alert['id']}", headers=live.headers).json()
        if now["state"] == "resolved":
            break
        time.sleep(0.1)
    assert now["state"] == "resolved"


@pytest.mark.parametrize("args,fragment", [
    (["--log-format", "xml"], "--log-format"),
    (["--alert-interval", "0.001"], "--alert-interval"),
    (["--alert-pool-full", "1.5"], "alert thresholds"),
    (["--alert-quota", "0"], "alert thresholds"),
    (["--alert-task-deadline", "-1"], "alert thresholds"),
])
def test_bad_observability_flags_are_one_error_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "POOLVISOR_HOME": str(tmp_path / "data")}
    r = subprocess.run([*CLI, "serve", "--db", str(tmp_path / "x.db"), "--port", "1", *args], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("poolvisor: error: ") and r.stderr.count("\n") == 1, r
    assert fragment in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.db").exists()  # refused before opening anything
