"""Apply the packaged Alembic migrations (store/migrations) programmatically: upgrade to head.

The upgrade runs in one writer transaction (BEGIN IMMEDIATE on SQLite, an advisory lock on
PostgreSQL), so processes opening the same database at once migrate it exactly once.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from poolvisor.store.engine import Store

MIGRATION_LOCK_KEY = 0x706F6F6C  # 'pool'


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "poolvisor.store:migrations")
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
        return rev


def upgrade(store: Store) -> None:
    """Bring the schema to head (a no-op when it is there already)."""
    if current_revision(store) == head_revision():
        return
    cfg = alembic_config()
    with store.engine.execution_options(poolvisor_write=True).begin() as conn:
        if store.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def main(argv: list[str]) -> int:
    """Developer entry point:
    `python -m poolvisor.store.migrate revision MESSAGE` autogenerates a new revision by comparing the
    ORM rows with a scratch SQLite database migrated to head; `... upgrade [URL]` migrates a database."""
    import sys
    import tempfile

    if len(argv) >= 2 and argv[0] == "revision":
        with tempfile.TemporaryDirectory() as d:
            store = Store(f"sqlite:///{d}/scratch.db")
            try:
                upgrade(store)
                cfg = alembic_config()
                with store.engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.revision(cfg, message=" ".join(argv[1:]), autogenerate=True)
            finally:
                store.close()
        return 0
    if argv and argv[0] == "upgrade":
        store = Store(argv[1] if len(argv) > 1 else None)
        try:
            upgrade(store)
            print(f"{store.url.split('://')[0]} database at revision {current_revision(store)}")
        finally:
            store.close()
        return 0
    print("usage: python -m poolvisor.store.migrate revision MESSAGE | upgrade [URL]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
