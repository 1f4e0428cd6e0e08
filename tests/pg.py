"""A throwaway PostgreSQL 15 for tests: initdb + pg_ctl as user postgres on a free loopback port.

Import the fixtures in a conftest (tests/conftest.py does): `pg_server` (session scope) starts one
cluster for the whole run; `pg_url` gives each test its own fresh database URL
(`postgresql+psycopg://postgres@127.0.0.1:PORT/DB`). The cluster is stopped with
`pg_ctl stop -m immediate` and its data directory removed at the end of the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("POOLVISOR_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass(frozen=True)
class PgServer:
    port: int
    datadir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args]


def pg_available() -> tuple[bool, str]:
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        return False, f"PostgreSQL 15 binaries not found in {PG_BIN}"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return False, "starting PostgreSQL as user postgres needs root and runuser"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False, "no 'postgres' system user"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False, "psycopg (PostgreSQL driver) is not installed"
    return True, ""


def _require_real(config: pytest.Config, ok: bool, reason: str) -> None:
    """tests/conftest.py's require_real (found through the plugin manager: several directories
    have a module named `conftest`, so importing it by name is ambiguous)."""
    root = config.pluginmanager.get_plugin(str(Path(__file__).with_name("conftest.py")))
    root.require_real(ok, reason)


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    ok, reason = pg_available()
    _require_real(request.config, ok, reason)
    pw = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="poolvisor-pg-"))
    os.chown(root, pw.pw_uid, pw.pw_gid)
    datadir, log = root / "data", root / "server.log"
    port = _free_port()
    def run(*args: str) -> None:
        subprocess.run(_as_postgres(*args), check=True, capture_output=True, text=True, timeout=120)

    started = False
    try:
        run(str(PG_BIN / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8")
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200 -c shared_buffers=32MB")
        run(str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
        started = True
        yield PgServer(port, datadir)
    except subprocess.CalledProcessError as e:
        detail = log.read_text()[-2000:] if log.exists() else ""
        pytest.fail(f"could not start PostgreSQL: {e.stderr or e.stdout}\n{detail}")
    finally:
        if started:
            subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w",
                                        "stop"), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL (dropped afterwards)."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
