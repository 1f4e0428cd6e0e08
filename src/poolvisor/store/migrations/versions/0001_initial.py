"""Initial schema: pools, hosts with per-resource rows, flavors, projects, groups, workloads,
allocations ledger, events, tokens, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "pools",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id"), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("domain", sa.String(63), nullable=False),
        sa.Column("max_workloads", sa.Integer, nullable=False),
        sa.Column("workloads", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_hosts_pool_id", "hosts", ["pool_id"])
    op.create_table(
        "host_resources",
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("resource", sa.String(63), primary_key=True),
        sa.Column("capacity", sa.Float, nullable=False),
        sa.Column("overcommit", sa.Float, nullable=False),
        sa.Column("allocated", sa.Float, nullable=False),
    )
    op.create_table(
        "flavors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("demand", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "workloads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id"), nullable=True),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id"), nullable=True),
        sa.Column("flavor", sa.String(63), nullable=True),
        sa.Column("demand", sa.JSON, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("explanation", sa.JSON, nullable=True),
        sa.Column("constraints", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_index("ix_workloads_host_state", "workloads", ["host_id", "state"])
    op.create_index("ix_workloads_group_id", "workloads", ["group_id"])
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id"), nullable=False),
        sa.Column("resource", sa.String(63), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.UniqueConstraint("workload_id", "host_id", "resource"),
    )
    op.create_index("ix_allocations_workload_id", "allocations", ["workload_id"])
    op.create_index("ix_allocations_host_id", "allocations", ["host_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("time", TS, nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("project", sa.String(63), nullable=True),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_time", "events", ["time"])
    op.create_index("ix_events_project", "events", ["project"])


def downgrade() -> None:
    for t in ("events", "allocations", "workloads", "groups", "flavors", "host_resources", "hosts", "pools",
              "tokens", "projects", "meta"):
        op.drop_table(t)
