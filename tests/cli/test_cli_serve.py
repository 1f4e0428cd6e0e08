"""End to end: `poolvisor serve` as a real process on a loopback port, the CLI as its client."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_server import CLI, clean_env, free_port, live_server  # noqa: F401 - re-exported to sibling modules
from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app


@dataclass
class Server:
    url: str
    env: dict[str, str]
    home: Path
    proc: subprocess.Popen[bytes]

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the CLI as a real process (as users and scripts do)."""
        return subprocess.run([*CLI, *args], env=env or self.env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def run(server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the CLI in this process (same entry point and error policy; no interpreter start-up)."""

    def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as m:
            for k in ("POOLVISOR_TOKEN", "POOLVISOR_URL", "POOLVISOR_PROJECT"):
                m.delenv(k, raising=False)
            for k, v in (env or server.env).items():
                if k.startswith("POOLVISOR_") or k == "HOME":
                    m.setenv(k, v)
            capsys.readouterr()
            code: int | str | None = 0
            try:
                run_guarded(lambda: app(list(args), standalone_mode=True))
            except SystemExit as e:
                code = e.code
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), int(code or 0), out, err)

    return invoke


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with live_server(tmp_path_factory.mktemp("serve"), "--demo", "5", "--controller-interval", "0",
                     "--log-level", "warning") as live:
        yield Server(live.url, live.env, live.home, live.proc)


def one_error_line(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("poolvisor: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for f in fragments:
        assert f in r.stderr, r.stderr


def test_token_file_written_with_mode_0600(server: Server) -> None:
    path = server.home / ".config" / "poolvisor" / "token"
    assert path.stat().st_mode & 0o777 == 0o600
    token = path.read_text().strip()
    r = httpx.get(f"{server.url}/v1/hosts", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and len(r.json()) == 5


def test_host_list_json(server: Server) -> None:
    r = server.cli("host", "list", "--json")
    assert r.returncode == 0, r.stderr
    hosts = json.loads(r.stdout)
    assert len(hosts) == 5 and all({"name", "state"} <= set(h) for h in hosts)
    assert {h["state"] for h in hosts} == {"up"}


def test_vm_create_json_and_list(server: Server, run: Callable[..., Any]) -> None:
    r = server.cli("vm", "create", "web1", "--flavor", "small", "--project", "demo", "--json")
    assert r.returncode == 0, r.stderr
    w = json.loads(r.stdout)
    assert w["name"] == "web1" and w["state"] == "running" and w["host"].startswith("demo-")
    assert w["explanation"]["hosts_considered"] == 5 and w["explanation"]["top"][0]["host"] == w["host"]
    r = run("vm", "list", "--json")
    listed = json.loads(r.stdout)
    assert [(x["name"], x["state"], x["host"]) for x in listed] == [("web1", "running", w["host"])]
    # human output: where it went and why
    r = run("vm", "create", "web2", "--flavor", "medium", "--project", "demo", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would go to" in r.stdout and "Filters" in r.stdout and "Top candidates" in r.stdout
    assert "web2" not in run("vm", "list", "--json").stdout
    events = json.loads(run("events", "--project", "demo", "--json").stdout)
    assert any(e["subject"].endswith("web1") for e in events), events


def test_bad_input_is_one_line(server: Server, run: Callable[..., Any]) -> None:
    one_error_line(server.cli("vm", "create", "x", "--flavor", "nope", "--project", "demo"), "flavor", "nope")
    one_error_line(run("vm", "create", "x", "--demand", "vcpu=100000", "--project", "demo"),
                   "no valid host", "capacity")
    one_error_line(run("host", "create", "h", "--capacity", "vcpu=lots"), "not a number")
    one_error_line(run("host", "show", "ghost"), "not found")
    one_error_line(run("host", "list", "--token", "wrong"), "invalid bearer token")
    one_error_line(run("host", "list", "--url", f"http://127.0.0.1:{free_port()}"), "connection refused")
    env = {**server.env, "HOME": str(server.home / "elsewhere")}
    one_error_line(run("host", "list", env=env), "no API token")
    # nothing half-written by the failures above
    assert [h["name"] for h in json.loads(run("host", "list", "--json").stdout)] == \
        [f"demo-{i:03d}" for i in range(5)]


def test_busy_port_is_one_line(server: Server, tmp_path: Path, run: Callable[..., Any]) -> None:
    port = server.url.rsplit(":", 1)[1]
    r = run("serve", "--db", str(tmp_path / "x.db"), "--port", port)
    one_error_line(r, "cannot listen")


def test_parallel_creates_never_overallocate(server: Server) -> None:
    """Many concurrent POSTs through uvicorn's thread pool: each big workload takes a whole host."""
    from concurrent.futures import ThreadPoolExecutor

    token = (server.home / ".config" / "poolvisor" / "token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    hosts = httpx.get(f"{server.url}/v1/hosts", headers=headers).json()
    fits = sum(1 for h in hosts if h["state"] == "up" and h["free"]["vcpu"] >= 64)
    assert fits >= 2

    def create(i: int) -> int:
        body = {"name": f"big-{i}", "demand": {"vcpu": 64}, "project": "demo"}
        return httpx.post(f"{server.url}/v1/workloads", json=body, headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(create, range(3 * len(hosts))))
    assert codes.count(201) == fits and set(codes) <= {201, 409}, codes
    after = httpx.get(f"{server.url}/v1/hosts", headers=headers).json()
    for h in after:
        assert all(v >= -1e-9 for v in h["free"].values()), h
    placed = [w["host"] for w in httpx.get(f"{server.url}/v1/workloads", headers=headers).json()
              if w["name"].startswith("big-")]
    assert len(placed) == len(set(placed)) == fits


def test_vm_create_explain_asks_for_the_full_explanation(server: Server, run: Callable[..., Any]) -> None:
    r = run("vm", "create", "ex1", "--flavor", "small", "--project", "demo", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["explanation"]["detail"] == "summary"
    r = run("vm", "create", "ex1", "--flavor", "small", "--project", "demo", "--dry-run", "--explain")
    assert r.returncode == 0, r.stderr
    assert "capacity" in r.stdout and "max-workloads" in r.stdout and "decided by: index" in r.stdout
