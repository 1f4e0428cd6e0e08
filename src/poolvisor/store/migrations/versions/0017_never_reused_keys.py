"""Volume and storage device ids are never reused (SQLite AUTOINCREMENT); an attachment being
detached says so (`volume_attachments.detaching_since`), so a delete of its workload waits.

A volume's objects live in `v<id>` directories and a device's marker names its id. SQLite hands
out max(id)+1 for a plain INTEGER PRIMARY KEY, so a new volume could take a deleted volume's id and
read the bytes it left behind (a pre-copy left by a crash, a write racing the delete), and a new
device could take the id a stale marker names. AUTOINCREMENT keeps a high-water mark in
`sqlite_sequence`; the sequence starts after today's largest id. PostgreSQL sequences never go
back: nothing to do there.

SQLite cannot add AUTOINCREMENT in place: both tables are rebuilt (copy, drop, rename). With
foreign keys enforced (every poolvisor connection), dropping the old table would cascade to the
volumes' segments and attachments, fail on the segments' devices and null `snapshot_of`: the
rows that refer to the two tables are set aside in temporary tables first and put back after.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = ("storage_devices", "volumes")
TS = sa.DateTime(timezone=True)


_CHILDREN = ("volume_segments", "volume_attachments")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for child in _CHILDREN:
        op.execute(f"CREATE TEMP TABLE _keep_{child} AS SELECT * FROM {child}")
        op.execute(f"DELETE FROM {child}")
    op.execute("CREATE TEMP TABLE _keep_snapshot_of AS SELECT id, snapshot_of FROM volumes "
               "WHERE snapshot_of IS NOT NULL")
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
    op.execute("UPDATE volumes SET snapshot_of = (SELECT k.snapshot_of FROM _keep_snapshot_of k "
               "WHERE k.id = volumes.id) WHERE id IN (SELECT id FROM _keep_snapshot_of)")
    for child in _CHILDREN:
        op.execute(f"INSERT INTO {child} SELECT * FROM _keep_{child}")
        op.execute(f"DROP TABLE _keep_{child}")
    op.execute("DROP TABLE _keep_snapshot_of")


def upgrade() -> None:
    _rebuild(True)
    op.add_column("volume_attachments", sa.Column("detaching_since", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_attachments") as b:
        b.drop_column("detaching_since")
    _rebuild(False)
