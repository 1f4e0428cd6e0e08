"""Utilization samples: per-workload CPU use over time (fraction 0..1 at epoch seconds), for what-if.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "utilization_samples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("cpu", sa.Float, nullable=False),
    )
    op.create_index("ix_utilization_samples_workload_time", "utilization_samples", ["workload_id", "time"])


def downgrade() -> None:
    op.drop_index("ix_utilization_samples_workload_time", table_name="utilization_samples")
    op.drop_table("utilization_samples")
