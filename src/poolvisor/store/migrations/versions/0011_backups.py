"""Backups: targets (server directories), schedules with retention, backups that outlive their
workload (docs/backups.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_targets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "backup_schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("target_id", sa.Integer, sa.ForeignKey("backup_targets.id"), nullable=False),
        sa.Column("every_s", sa.Float, nullable=False),
        sa.Column("keep", sa.Integer, nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("project_id", "scope", "name"),
    )
    op.create_table(
        "backups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("workload", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("target_id", sa.Integer, sa.ForeignKey("backup_targets.id"), nullable=False),
        sa.Column("schedule_id", sa.Integer, sa.ForeignKey("backup_schedules.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("host", sa.String(63), nullable=False),
        sa.Column("workload_state", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("project_id", "workload", "name"),
    )
    op.create_index("ix_backups_schedule", "backups", ["schedule_id", "workload"])


def downgrade() -> None:
    op.drop_index("ix_backups_schedule", table_name="backups")
    op.drop_table("backups")
    op.drop_table("backup_schedules")
    op.drop_table("backup_targets")
