"""Engine set-up, migrations, transaction runner and error mapping."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from poolvisor.domain.errors import ConflictError, UnavailableError
from poolvisor.store import Stale, Store, default_url, normalize_url, open_store
from poolvisor.store.migrate import head_revision
from poolvisor.store.rows import Base, PoolRow


def test_default_url(monkeypatch, tmp_path):
    monkeypatch.setenv("POOLVISOR_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1:5/x")
    assert default_url() == "postgresql+psycopg://u@127.0.0.1:5/x"
    monkeypatch.delenv("POOLVISOR_DATABASE_URL")
    monkeypatch.setenv("POOLVISOR_HOME", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path}/poolvisor.db"
    monkeypatch.delenv("POOLVISOR_HOME")
    assert default_url().endswith(".local/share/poolvisor/poolvisor.db")


def test_normalize_url(tmp_path):
    assert normalize_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path}/a.db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_pragmas_and_migrations(tmp_path):
    store = open_store(str(tmp_path / "p.db"))
    try:
        with store.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
            # the migrations build exactly what the ORM rows describe
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            c.rollback()
    finally:
        store.close()


def test_concurrent_opens_migrate_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    errors: list[BaseException] = []

    def op() -> None:
        try:
            open_store(url).close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=op) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    store = open_store(url)
    with store.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    store.close()


def test_writers_queue_and_readers_are_not_blocked(tmp_path):
    store = open_store(str(tmp_path / "w.db"))
    holding, reader_done = threading.Event(), threading.Event()
    out: list[str] = []

    def long_writer(s):
        s.add(PoolRow(name="first", description=""))
        s.flush()
        holding.set()
        assert reader_done.wait(10)  # a reader must get through while we hold the write lock
        return "first"

    t = threading.Thread(target=lambda: out.append(store.run(long_writer)))
    t.start()
    assert holding.wait(10)
    assert store.run(lambda s: s.scalar(select(func.count()).select_from(PoolRow)), write=False) == 0
    reader_done.set()
    # a second writer waits for the first instead of failing
    store.run(lambda s: s.add(PoolRow(name="second", description="")))
    t.join()
    assert out == ["first"]
    assert store.run(lambda s: s.scalar(select(func.count()).select_from(PoolRow)), write=False) == 2
    store.close()


def test_run_retries_and_maps_errors(tmp_path):
    store = open_store(str(tmp_path / "r.db"))
    calls = []

    def flaky(s):
        calls.append(1)
        s.add(PoolRow(name=f"p{len(calls)}", description=""))
        if len(calls) < 3:
            raise Stale()
        return len(calls)

    assert store.run(flaky) == 3
    assert store.run(lambda s: s.scalars(select(PoolRow.name)).all(), write=False) == ["p3"]  # rolled back

    def always(s):
        raise Stale()

    with pytest.raises(ConflictError, match="concurrent"):
        store.run(always, deadline_s=0.05)
    with pytest.raises(ConflictError):
        store.run(lambda s: s.add_all([PoolRow(name="dup", description=""),
                                       PoolRow(name="dup", description="")]))
    store.close()


def test_a_writer_locked_out_past_the_busy_timeout_is_a_transient_conflict(tmp_path):
    """BEGIN IMMEDIATE goes to the DBAPI connection directly (engine.py `_on_begin`): when another
    process holds the write lock past busy_timeout, that is still Stale (run again), not a 500."""
    import sqlite3

    store = open_store(str(tmp_path / "b.db"))
    other = sqlite3.connect(str(tmp_path / "b.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
    store._pragmas.append("PRAGMA busy_timeout=50")
    store.engine.dispose()
    try:
        with pytest.raises(Stale):
            store.run_once(lambda s: s.add(PoolRow(name="x", description="")))
        with pytest.raises(ConflictError, match="concurrent"):
            store.run(lambda s: s.add(PoolRow(name="x", description="")), deadline_s=0.2)
        other.execute("ROLLBACK")
        store.run(lambda s: s.add(PoolRow(name="x", description="")))  # the lock is free: it commits
        assert store.run(lambda s: s.scalars(select(PoolRow.name)).all(), write=False) == ["x"]
    finally:
        other.close()
        store.close()


def test_unreachable_databases_are_unavailable(tmp_path):
    with pytest.raises(UnavailableError, match="database unavailable"):
        open_store("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UnavailableError):
        open_store(str(blocker / "sub" / "x.db"))  # parent is a file
    with pytest.raises(UnavailableError):
        open_store("nosuchdialect://x/y")


@pytest.mark.real
def test_database_lost_after_open_is_unavailable(pg_server):
    import psycopg

    from poolvisor.services import open_services

    url = pg_server.create_database()
    svc = open_services(url)
    svc.catalog.create_pool("p")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={pg_server.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    with pytest.raises(UnavailableError):
        svc.catalog.list_pools()
    svc.close()


def test_store_is_reusable_object(tmp_path):
    s = Store(str(tmp_path / "plain.db"))
    assert s.is_sqlite and s.url.startswith("sqlite:///")
    s.close()
