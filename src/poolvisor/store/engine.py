"""Engines and transactions: SQLite (WAL, busy timeout, BEGIN IMMEDIATE writers) or PostgreSQL.

`Store.run(fn, write=...)` is the only way services touch the database: one session, one
transaction, run again (retry.py, with_retry) when the database reports a transient conflict
(SQLite busy, PostgreSQL serialization failure or deadlock) or when `fn` raises `Stale` (an
optimistic check lost a race). `Store.run_once` is one attempt: Stale reaches the caller, whose
decision, taken before the transaction, must be taken again. Connection failures become
UnavailableError; integrity violations become ConflictError.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from poolvisor.domain.errors import ConflictError, UnavailableError
from poolvisor.store.retry import Stale, with_retry

T = TypeVar("T")
ENV_URL = "POOLVISOR_DATABASE_URL"
ENV_HOME = "POOLVISOR_HOME"
SQLITE_BUSY_MS = 30_000
TX_DEADLINE_S = 10.0  # keep re-running a transaction that loses races, up to this long


def default_url() -> str:
    """POOLVISOR_DATABASE_URL, else an SQLite file under $POOLVISOR_HOME (~/.local/share/poolvisor)."""
    env = os.environ.get(ENV_URL)
    if env:
        return env
    home = Path(os.environ.get(ENV_HOME) or Path.home() / ".local" / "share" / "poolvisor")
    return f"sqlite:///{home / 'poolvisor.db'}"


def normalize_url(url: str | None) -> str:
    """Accept a full SQLAlchemy URL, a bare `postgresql://` URL (psycopg 3) or a plain file path."""
    url = url or default_url()
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_engine(url: str) -> Engine:
    u = make_url(url)
    memory = u.database in (None, "", ":memory:")
    if not memory:
        assert u.database is not None
        parent = Path(u.database).expanduser().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UnavailableError(f"database directory {parent} cannot be created: {e.strerror}") from None
    kw: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000}}
    if memory:
        kw["poolclass"] = StaticPool
    engine = create_engine(url, **kw)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: survives process crashes
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so two writers queue on busy_timeout instead of
        # failing when a deferred transaction tries to upgrade; readers use a WAL snapshot.
        write = conn.get_execution_options().get("poolvisor_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                             connect_args={"connect_timeout": 5} if "psycopg" in url else {})
    except (ArgumentError, ImportError) as e:  # bad URL or missing driver package
        raise UnavailableError(f"cannot use database URL {redact(url)}: {e}") from None


def redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def is_transient(e: DBAPIError) -> bool:
    """SQLite busy/locked, PostgreSQL serialization failure or deadlock: worth retrying."""
    state = getattr(e.orig, "sqlstate", None)
    if state in ("40001", "40P01", "55P03"):
        return True
    msg = str(e.orig).lower()
    return "database is locked" in msg or "database is busy" in msg or "database table is locked" in msg


def is_foreign_key(e: IntegrityError) -> bool:
    """A foreign-key violation (PostgreSQL 23503, SQLite's message), not a unique one."""
    return getattr(e.orig, "sqlstate", None) == "23503" or "foreign key" in str(e.orig).lower()


class Store:
    """An engine plus the transaction runner; thread-safe (a session per call)."""

    def __init__(self, url: str | None = None):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._write_engine = self.engine.execution_options(poolvisor_write=True)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def close(self) -> None:
        self.engine.dispose()

    def run(self, fn: Callable[[Session], T], *, write: bool = True, deadline_s: float = TX_DEADLINE_S) -> T:
        """Run fn(session) in one transaction; commit on success, run it again on Stale."""
        return with_retry(lambda: self.run_once(fn, write=write), deadline_s=deadline_s,
                          conflict="too many concurrent changes; the request was not applied, retry it",
                          first_s=0.002, cap_s=0.2)

    def run_once(self, fn: Callable[[Session], T], *, write: bool = True) -> T:
        """One attempt of run(): a transient conflict, like an optimistic check in `fn`, raises Stale."""
        try:
            bind = self._write_engine if write else self.engine
            with Session(bind, expire_on_commit=False) as s, s.begin():
                return fn(s)
        except IntegrityError as e:
            if is_foreign_key(e):  # services name the object where they can (services/references.py)
                raise ConflictError("the request refers to an object deleted meanwhile, or deletes one "
                                    f"still in use: {_first_line(e.orig)}") from None
            raise ConflictError(f"conflicting change: {_first_line(e.orig)}") from None
        except DBAPIError as e:
            if is_transient(e):
                raise Stale() from None
            if not isinstance(e, OperationalError):
                raise UnavailableError(f"database error: {_first_line(e.orig)}") from None
            raise UnavailableError(f"database unavailable ({redact(self.url)}): "
                                   f"{_first_line(e.orig)}") from None


def _first_line(e: BaseException | None) -> str:
    return str(e).strip().splitlines()[0] if e is not None and str(e).strip() else type(e).__name__
