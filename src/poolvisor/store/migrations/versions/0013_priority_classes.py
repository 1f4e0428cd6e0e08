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


def upgrade() -> None:
    with op.batch_alter_table("workloads") as b:
        b.add_column(sa.Column("priority_class", sa.String(16), nullable=False, server_default="normal"))
        b.add_column(sa.Column("state_reason", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workloads") as b:
        b.drop_column("state_reason")
        b.drop_column("priority_class")
