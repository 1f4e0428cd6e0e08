"""PostgreSQL connection handling: reads without BEGIN/COMMIT, idle connections checked before use."""

import pytest
from sqlalchemy import text

from poolvisor.store import open_store


@pytest.mark.real
def test_reads_run_in_autocommit_and_writes_in_a_transaction(pg_url):
    store = open_store(pg_url)
    try:
        # txid_current_if_assigned() is NULL outside a transaction block only when no xid was
        # taken; now() differs from statement_timestamp() only inside a multi-statement block:
        # in autocommit each statement is its own transaction, so both timestamps match.
        def probe(s):
            s.execute(text("SELECT pg_sleep(0.01)"))
            return s.execute(text("SELECT now() = statement_timestamp()")).scalar()

        assert store.run(probe, write=False) is True  # a read: no transaction block
        assert store.run(probe, write=True) is False  # a write: one transaction
    finally:
        store.close()


@pytest.mark.real
def test_a_dead_idle_connection_is_replaced_before_use(pg_url):
    store = open_store(pg_url)
    try:
        pid = store.run(lambda s: s.execute(text("SELECT pg_backend_pid()")).scalar(), write=False)
        admin = open_store(pg_url)
        try:  # the server closes the pooled connection (as a restart or an idle timeout would)
            admin.run(lambda s: s.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}))
        finally:
            admin.close()
        for rec in list(store.engine.pool._pool.queue):  # type: ignore[attr-defined]
            rec.info["poolvisor_idle_since"] = -1e9  # as if it sat idle for long
        again = store.run(lambda s: s.execute(text("SELECT pg_backend_pid()")).scalar(), write=False)
        assert again != pid
    finally:
        store.close()



@pytest.mark.real
def test_a_read_on_a_connection_closed_while_in_steady_use_is_run_again(pg_url):
    """A connection used within the idle window is not pinged: when the server closed it
    (restart, failover) the read fails once, the pool replaces it, and the read runs again
    instead of answering 503; a write is not run again (it may have reached COMMIT)."""
    store = open_store(pg_url)
    try:
        pid = store.run(lambda s: s.execute(text("SELECT pg_backend_pid()")).scalar(), write=False)
        admin = open_store(pg_url)
        try:
            admin.run(lambda s: s.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}))
        finally:
            admin.close()
        again = store.run(lambda s: s.execute(text("SELECT pg_backend_pid()")).scalar(), write=False)
        assert again != pid
    finally:
        store.close()
