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
    with op.batch_alter_table("hosts") as b:
        b.add_column(sa.Column("driver", sa.String(32), nullable=False, server_default="sim"))
        b.add_column(sa.Column("uri", sa.String(1024), nullable=False, server_default=""))
        b.add_column(sa.Column("fence", sa.String(1024), nullable=False, server_default="driver"))
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
    with op.batch_alter_table("hosts") as b:
        b.drop_column("fence")
        b.drop_column("uri")
        b.drop_column("driver")
