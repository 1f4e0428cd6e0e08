import pytest
from sqlalchemy import inspect

from poolvisor.store import open_store


@pytest.mark.real
def test_migrations_apply_on_real_postgres(pg_url):
    store = open_store(pg_url)
    try:
        tables = set(inspect(store.engine).get_table_names())
        assert {"hosts", "host_resources", "workloads", "allocations", "events", "alembic_version"} <= tables
        assert store.dialect == "postgresql"
    finally:
        store.close()
