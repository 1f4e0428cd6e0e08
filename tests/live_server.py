"""A real `poolvisor serve` subprocess on a loopback port, for end-to-end tests.

One place for the start-up (free port, log file, poll /healthz or fail with the log), the admin
token and the teardown (SIGTERM by PID, SIGKILL if it hangs), so test modules differ only in
the serve arguments they pass.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CLI = [sys.executable, "-m", "poolvisor.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path) -> dict[str, str]:
    """The caller's environment without any POOLVISOR_ target or credential, HOME under the test."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("POOLVISOR_TOKEN", "POOLVISOR_URL", "POOLVISOR_DATABASE_URL", "POOLVISOR_PROJECT")}
    env.update(HOME=str(home), POOLVISOR_HOME=str(home / "data"), COLUMNS="160")
    return env


@dataclass
class Live:
    url: str
    token: str
    headers: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]  # the server's environment plus POOLVISOR_URL: what a CLI client needs
    home: Path


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60,
                 poll: float = 0.2) -> None:
    """Poll `url`/healthz until it answers 200; fail with the log if serve exits or stays silent."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"serve did not answer: {log.read_text()}")
        time.sleep(poll)


@contextmanager
def live_server(tmp: Path, *extra_args: str, env: dict[str, str] | None = None, port: int | None = None,
                db: bool = True, start_timeout: float = 60, stop_timeout: float = 20) -> Iterator[Live]:
    """Run `poolvisor serve [--db tmp/pv.db] --port P *extra_args` until the block ends.

    `env` defaults to clean_env(tmp/"home"); the admin token is POOLVISOR_TOKEN when the env sets
    one, else the token file serve writes under HOME.
    """
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = clean_env(home) if env is None else env
    home = Path(env.get("HOME", str(home)))
    port = free_port() if port is None else port
    log_path = tmp / "serve.log"
    argv = [*CLI, "serve", *(["--db", str(tmp / "pv.db")] if db else []), "--port", str(port), *extra_args]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(proc, url, log_path, start_timeout)
            token_file = home / ".config" / "poolvisor" / "token"
            token = env.get("POOLVISOR_TOKEN") or token_file.read_text().strip()
            yield Live(url, token, {"Authorization": f"Bearer {token}"}, log_path, proc,
                       {**env, "POOLVISOR_URL": url}, home)
        finally:
            if proc.poll() is None:  # a test may have stopped it already
                os.kill(proc.pid, signal.SIGTERM)  # stopped by its PID, never by name
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
