"""Workload priority classes, the reason for a state the system set (preemption), the queue of
pending creations and each pool's queue discipline.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


# Plain ALTER TABLE ADD/DROP COLUMN (SQLite >= 3.35 has both), not a batch copy of the table:
# with foreign keys on, dropping the old copy of `workloads` would cascade to its allocations.
def upgrade() -> None:
    op.add_column("workloads", sa.Column("priority_class", sa.String(16), nullable=False,
                                         server_default="normal"))
    op.add_column("workloads", sa.Column("state_reason", sa.String(255), nullable=True))
    op.add_column("pools", sa.Column("queue_discipline", sa.String(16), nullable=False,
                                     server_default="priority"))
    op.create_table(
        "pending_workloads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id", ondelete="CASCADE"), nullable=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("priority_class", sa.String(16), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("demand", sa.JSON, nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_index("ix_pending_workloads_project_id", "pending_workloads", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_pending_workloads_project_id", "pending_workloads")
    op.drop_table("pending_workloads")
    op.drop_column("pools", "queue_discipline")
    op.drop_column("workloads", "state_reason")
    op.drop_column("workloads", "priority_class")
