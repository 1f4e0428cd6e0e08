"""Hosts bound to a driver: `driver` (sim, libvirt, lxc...), `uri` (where the driver reaches the
node) and `fence` (the host's fence method); existing hosts become sim hosts fenced through their
driver. Workload snapshots recorded in `workload_snapshots`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # plain ADD COLUMN (no table copy: other tables reference hosts)
    op.add_column("hosts", sa.Column("driver", sa.String(32), nullable=False, server_default="sim"))
    op.add_column("hosts", sa.Column("uri", sa.String(1024), nullable=False, server_default=""))
    op.add_column("hosts", sa.Column("fence", sa.String(1024), nullable=False, server_default="driver"))
    op.create_table(
        "workload_snapshots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("workload_state", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("host", sa.String(63), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("workload_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("workload_snapshots")
    # Not a batch (copy-and-rename) on SQLite: dropping `hosts` would cascade into or be refused by
    # every table that references it. SQLite >= 3.35 drops a plain column in place.
    for col in ("fence", "uri", "driver"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE hosts DROP COLUMN {col}")
        else:
            op.drop_column("hosts", col)
