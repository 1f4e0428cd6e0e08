"""Observability: a severity on every event, an index to filter events by kind, and alerts.

An alert is a condition a rule found (pool nearly full, host down, quota nearly exhausted, SLA
violation, stuck task) on a subject; `open_key` is `rule:subject` while it is active and NULL
once resolved, so a unique index keeps one active alert per condition even when two replicas
evaluate at once (NULLs never collide).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("events") as b:
        b.add_column(sa.Column("severity", sa.String(16), nullable=False, server_default="info"))
    op.create_index("ix_events_kind", "events", ["kind"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rule", sa.String(63), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("project", sa.String(63), nullable=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("open_key", sa.String(270), nullable=True),
        sa.Column("raised_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("acked_at", TS, nullable=True),
        sa.Column("acked_by", sa.String(63), nullable=True),
    )
    op.create_index("ix_alerts_open_key", "alerts", ["open_key"], unique=True)
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_project", "alerts", ["project"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_index("ix_events_kind", table_name="events")
    with op.batch_alter_table("events") as b:
        b.drop_column("severity")
