"""A throwaway PostgreSQL 15 cluster for `poolvisor bench api --db postgres` (as tests/pg.py does).

initdb + pg_ctl as user `postgres` (needs root and runuser) on a free loopback port, fsync off
(benchmark data is thrown away), stopped with `pg_ctl stop -m immediate` and removed afterwards.
Its postmaster's PID is known, so the bench can read the CPU time of the whole cluster (the
postmaster, every backend, live or reaped, and the background processes) from /proc.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from poolvisor.domain.errors import UnavailableError

PG_BIN = Path(os.environ.get("POOLVISOR_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True,
                   timeout=120)


@dataclass(frozen=True)
class Cluster:
    url: str  # SQLAlchemy URL of its empty `postgres` database
    datadir: Path

    @property
    def pid(self) -> int | None:
        """The postmaster's PID (the first line of postmaster.pid), None when it is not running."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


@contextmanager
def throwaway_cluster(max_connections: int = 300, options: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """Yield an empty database on a fresh local cluster. `options`: more `-c name=value` settings."""
    if not (PG_BIN / "initdb").exists() or os.geteuid() != 0 or shutil.which("runuser") is None:
        raise UnavailableError(f"a throwaway PostgreSQL needs root, runuser and {PG_BIN}/initdb; "
                               "pass --db postgresql://... instead")
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise UnavailableError("no 'postgres' system user for a throwaway PostgreSQL") from None
    root = Path(tempfile.mkdtemp(prefix="poolvisor-bench-pg-"))
    os.chown(root, pw.pw_uid, pw.pw_gid)
    datadir, log, port = root / "data", root / "server.log", _free_port()
    started = False
    try:
        _run(str(PG_BIN / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync",
             "-E", "UTF8")
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections={max_connections} -c shared_buffers=64MB"
                + "".join(f" -c {o}" for o in options))
        _run(str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-o", opts, "-w", "-t", "60",
             "start")
        started = True
        yield Cluster(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", datadir)
    except subprocess.CalledProcessError as e:
        detail = log.read_text()[-500:] if log.exists() else ""
        why = (e.stderr or e.stdout).strip()
        raise UnavailableError(f"could not start PostgreSQL: {why} {detail}") from None
    finally:
        if started:
            subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(datadir),
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
