"""Workload priority classes and the reason for a state the system set (preemption).

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None


# Plain ALTER TABLE ADD/DROP COLUMN (SQLite >= 3.35 has both), not a batch copy of the table:
# with foreign keys on, dropping the old copy of `workloads` would cascade to its allocations.
def upgrade() -> None:
    op.add_column("workloads", sa.Column("priority_class", sa.String(16), nullable=False,
                                         server_default="normal"))
    op.add_column("workloads", sa.Column("state_reason", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("workloads", "state_reason")
    op.drop_column("workloads", "priority_class")
