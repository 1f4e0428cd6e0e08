"""Engines and transactions: SQLite (WAL, busy timeout, BEGIN IMMEDIATE writers) or PostgreSQL.

`Store.run(fn, write=...)` is the only way services touch the database: one session, one
transaction, run again (retry.py, with_retry) when the database reports a transient conflict
(SQLite busy, PostgreSQL serialization failure or deadlock) or when `fn` raises `Stale` (an
optimistic check lost a race). `Store.run_once` is one attempt: Stale reaches the caller, whose
decision, taken before the transaction, must be taken again. Connection failures become
UnavailableError; integrity violations become ConflictError.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from poolvisor.domain.errors import ConflictError, UnavailableError
from poolvisor.store import writelock
from poolvisor.store.retry import Stale, with_retry
from poolvisor.store.writelock import WriteLock

if TYPE_CHECKING:
    from poolvisor.store.group import GroupCommit

T = TypeVar("T")
ENV_URL = "POOLVISOR_DATABASE_URL"
ENV_HOME = "POOLVISOR_HOME"
SQLITE_BUSY_MS = 30_000
TX_DEADLINE_S = 10.0  # keep re-running a transaction that loses races, up to this long
CHECKPOINT_INTERVAL_S = 0.1
WAL_LIMIT_BYTES = 32 << 20
PG_POOL_SIZE, PG_MAX_OVERFLOW = 10, 20
PING_IDLE_S = 2.0  # PostgreSQL: a pooled connection idle longer than this is checked before use
log = logging.getLogger("poolvisor.store")


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


def _sqlite_engine(url: str, pragmas: list[str]) -> Engine:
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
        for p in pragmas:  # set by the Store after creation (e.g. the background checkpointer's)
            cur.execute(p)
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so two writers queue on busy_timeout instead of
        # failing when a deferred transaction tries to upgrade; readers use a WAL snapshot.
        # Sent on the DBAPI connection itself: through exec_driver_sql this one statement cost as
        # much as a query (an execution context, cursor events), and every transaction sends it.
        # A failure (busy past busy_timeout, I/O) is wrapped as SQLAlchemy would (transient or not).
        sql = "BEGIN IMMEDIATE" if conn.get_execution_options().get("poolvisor_write", False) else "BEGIN"
        try:
            conn.connection.dbapi_connection.execute(sql).close()
        except sqlite3.Error as e:
            raise DBAPIError.instance(sql, None, e, sqlite3.Error) from e

    return engine


def make_engine(url: str, pragmas: list[str] | None = None) -> Engine:
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url, pragmas if pragmas is not None else [])
        engine = create_engine(url, pool_size=PG_POOL_SIZE, max_overflow=PG_MAX_OVERFLOW,
                               connect_args={"connect_timeout": 5} if "psycopg" in url else {})
        _ping_when_idle(engine)
        return engine
    except (ArgumentError, ImportError) as e:  # bad URL or missing driver package
        raise UnavailableError(f"cannot use database URL {redact(url)}: {e}") from None


def _ping_when_idle(engine: Engine, idle_s: float = PING_IDLE_S) -> None:
    """Check a pooled connection before use only when it sat idle longer than `idle_s`.

    `pool_pre_ping` pinged on every checkout: one more round trip per transaction (three per
    create), each a wait for the PostgreSQL backend to be scheduled on a busy machine. A
    connection in steady use was just seen working; one idle for a while may have been closed
    by the server (restart, idle timeout): it is pinged, and a dead one is replaced (the pool
    retries the checkout on DisconnectionError), as pre-ping did."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, rec: Any) -> None:
        rec.info["poolvisor_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, rec: Any, _proxy: Any) -> None:
        since = rec.info.get("poolvisor_idle_since")
        if since is None or time.monotonic() - since <= idle_s:
            return
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
            if not getattr(dbapi_conn, "autocommit", True):
                dbapi_conn.rollback()  # end the implicit transaction the ping opened
        except Exception as e:  # noqa: BLE001 - any failure: the pool opens a fresh connection
            raise DisconnectionError(f"pooled connection is dead: {type(e).__name__}") from e


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
        self._pragmas: list[str] = []  # extra PRAGMAs of every new SQLite connection
        self.engine = make_engine(self.url, self._pragmas)
        self.dialect = self.engine.dialect.name
        self._write_engine = self.engine.execution_options(poolvisor_write=True)
        # PostgreSQL reads run in autocommit: at READ COMMITTED (the default, kept for writers)
        # every statement takes its own snapshot whether or not it is inside a transaction, so a
        # read transaction only added a BEGIN and a COMMIT round trip. SQLite keeps its BEGIN
        # (one WAL snapshot for the whole read).
        self._read_engine = self.engine if self.dialect == "sqlite" else \
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # SQLite has one writer at a time: writers queue on a thread lock, then (file databases)
        # on a file lock shared with other processes on the same file, woken at once when it
        # frees, instead of polling in SQLite's busy handler (writelock.py).
        self._writer: contextlib.AbstractContextManager[Any] = \
            writelock.shared(_lock_path(self.url)) if self.dialect == "sqlite" else contextlib.nullcontext()
        self._lock_released = False
        self._checkpointer: Checkpointer | None = None
        self._group: GroupCommit | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def start_checkpointer(self, interval_s: float = CHECKPOINT_INTERVAL_S) -> bool:
        """SQLite file databases: checkpoint the WAL from a background thread instead of inside a
        writer's commit. SQLite's automatic checkpoint runs in the commit that crosses 1,000 WAL
        pages, and with synchronous=NORMAL it fsyncs: that commit took 10-30 ms here, holding the
        write lock (and this process's writer queue) all along. A server starts this; short-lived
        CLI processes keep the automatic checkpoint. False when it does not apply."""
        if self.dialect != "sqlite" or self._checkpointer is not None:
            return False
        db = make_url(self.url).database
        if db in (None, "", ":memory:"):
            return False
        self._pragmas.append("PRAGMA wal_autocheckpoint=0")
        self.engine.dispose()  # pooled connections reopen with the pragma
        self._checkpointer = Checkpointer(str(db), interval_s)
        self._checkpointer.start()
        return True

    def close(self) -> None:
        if self._group is not None:
            self._group.stop()
            self._group = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()
        if isinstance(self._writer, WriteLock) and not self._lock_released:
            self._lock_released = True  # a second close must not release another store's use
            writelock.release(self._writer)

    def run(self, fn: Callable[[Session], T], *, write: bool = True, deadline_s: float = TX_DEADLINE_S,
            grouped: bool = False, hosts: tuple[int, ...] = ()) -> T:
        """Run fn(session) in one transaction; commit on success, run it again on Stale.
        `grouped`: a short write that may share its transaction with other requests' (group.py);
        `hosts`: the hosts whose rows it locks (a group takes them first, in id order)."""
        return with_retry(lambda: self.run_once(fn, write=write, grouped=grouped, hosts=hosts),
                          deadline_s=deadline_s,
                          conflict="too many concurrent changes; the request was not applied, retry it",
                          first_s=0.002, cap_s=0.2)

    @property
    def group(self) -> GroupCommit | None:
        """The writer thread's group commit (None: grouped writes run alone)."""
        return self._group

    @property
    def groups_writes(self) -> bool:
        """Grouped writes share transactions (group commit started)."""
        return self._group is not None

    def start_group_commit(self) -> bool:
        """Hand grouped writes to one writer thread that commits them together (group.py). On
        SQLite this process's writers are serialized anyway (`_writer`), so a group costs no
        concurrency. On PostgreSQL a group holds several requests' row locks until its commit:
        it takes the hosts' rows first, in id order (group.lock_hosts), so groups of different
        replicas queue instead of deadlocking; one that still fails runs each request alone.
        False when already started."""
        if self._group is not None:
            return False
        from poolvisor.store.group import GroupCommit

        self._group = GroupCommit(self)
        self._group.start()
        return True

    def run_once(self, fn: Callable[[Session], T], *, write: bool = True, grouped: bool = False,
                 hosts: tuple[int, ...] = ()) -> T:
        """One attempt of run(): a transient conflict, like an optimistic check in `fn`, raises Stale."""
        if grouped and write and self._group is not None:
            return self._group.run(fn, hosts)
        try:
            if not write:
                with Session(self._read_engine, expire_on_commit=False) as s, s.begin():
                    return fn(s)
            with self._writer, Session(self._write_engine, expire_on_commit=False) as s, s.begin():
                return fn(s)
        except IntegrityError as e:
            if is_foreign_key(e):  # services name the object where they can (services/references.py)
                raise ConflictError("the request refers to an object deleted meanwhile, or deletes one "
                                    f"still in use: {_first_line(e.orig)}") from None
            raise ConflictError(f"conflicting change: {_first_line(e.orig)}") from None
        except DBAPIError as e:
            if is_transient(e):
                raise Stale() from None
            if not write and e.connection_invalidated:  # a pooled connection the server closed
                # (restart, failover) that was in use too lately to be pinged: the pool replaced
                # it, and a read is safe to run again (a write may have reached COMMIT: not retried)
                raise Stale() from None
            if not isinstance(e, OperationalError):
                raise UnavailableError(f"database error: {_first_line(e.orig)}") from None
            raise UnavailableError(f"database unavailable ({redact(self.url)}): "
                                   f"{_first_line(e.orig)}") from None


class Checkpointer:
    """A thread that runs `PRAGMA wal_checkpoint(PASSIVE)` every `interval_s` on its own
    connection: PASSIVE copies the WAL's committed pages into the database without blocking
    writers or readers (it skips what a reader still needs; the next round takes it). Writers
    start the WAL over once a checkpoint has caught up, so it stays small."""

    def __init__(self, path: str, interval_s: float) -> None:
        self.path, self.interval_s = path, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poolvisor-wal-checkpoint", daemon=True)
        self.rounds = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            while not self._stop.wait(self.interval_s):
                try:
                    # Under a steady stream of commits a PASSIVE checkpoint may never catch up with
                    # the WAL's end, and writers only start the WAL over once one has: past
                    # WAL_LIMIT_BYTES one TRUNCATE checkpoint (it waits for the writer of the moment,
                    # then holds new ones while it finishes) brings the file back to empty.
                    big = os.path.getsize(self.path + "-wal") > WAL_LIMIT_BYTES \
                        if os.path.exists(self.path + "-wal") else False
                    conn.execute(f"PRAGMA wal_checkpoint({'TRUNCATE' if big else 'PASSIVE'})").fetchall()
                    self.rounds += 1
                except sqlite3.Error as e:  # busy or I/O: the next round tries again
                    log.warning("WAL checkpoint failed: %s", e)
        except sqlite3.Error as e:
            log.warning("WAL checkpointer stopped: %s", e)
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # leave the WAL short at exit
                conn.close()


def _lock_path(url: str) -> str | None:
    """The write-lock file beside an SQLite database file (None for an in-memory database)."""
    db = make_url(url).database
    return None if db in (None, "", ":memory:") else f"{db}-writer.lock"


def _first_line(e: BaseException | None) -> str:
    return str(e).strip().splitlines()[0] if e is not None and str(e).strip() else type(e).__name__
