"""Tasks: long operations (migrate, consolidation apply, ...) journaled in their own table.

A queued or running task carries the lease of the process that owns it (like a transient
workload). The migration journal that 0003 and before kept in a migrating workload's
`constraints["migration"]` moves into a running `migrate` task (same lease), so the repair of an
interrupted migration reads it from there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("project", sa.String(63), nullable=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("journal", sa.JSON, nullable=False),
        sa.Column("entries", sa.JSON, nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("workload_id", sa.Integer, nullable=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_tasks_state_lease", "tasks", ["state", "lease_expires"])
    op.create_index("ix_tasks_workload_state", "tasks", ["workload_id", "state"])
    op.create_index("ix_tasks_project", "tasks", ["project"])
    op.create_index("ix_tasks_parent_id", "tasks", ["parent_id"])
    _move_migration_journals()


def _move_migration_journals() -> None:
    """Every migrating workload's journal becomes a running migrate task holding its lease."""
    bind = op.get_bind()
    w = sa.table("workloads", sa.column("id", sa.Integer), sa.column("name", sa.String),
                 sa.column("project_id", sa.Integer), sa.column("state", sa.String),
                 sa.column("constraints", sa.JSON), sa.column("lease_owner", sa.String),
                 sa.column("lease_expires", TS))
    p = sa.table("projects", sa.column("id", sa.Integer), sa.column("name", sa.String))
    t = sa.table("tasks", *(sa.column(c, sa.String) for c in ("kind", "state", "project", "subject",
                                                              "lease_owner")),
                 *(sa.column(c, sa.JSON) for c in ("params", "journal", "entries")),
                 sa.column("progress", sa.Float), sa.column("workload_id", sa.Integer),
                 *(sa.column(c, TS) for c in ("lease_expires", "created_at", "updated_at")))
    now = datetime.now(UTC)
    rows = bind.execute(sa.select(w.c.id, w.c.name, w.c.constraints, w.c.lease_owner, w.c.lease_expires,
                                  p.c.name).join(p, p.c.id == w.c.project_id)
                        .where(w.c.state == "migrating")).all()
    for wid, name, constraints, owner, expires, project in rows:
        c = dict(constraints or {})
        info = c.pop("migration", None)
        if not info:
            continue
        bind.execute(t.insert().values(
            kind="migrate", state="running", project=project, subject=f"workload/{project}/{name}",
            params={"project": project, "name": name, "host": info.get("to")}, journal=dict(info),
            entries=[{"time": now.isoformat(), "message": "journal moved from the workload (0004)"}],
            progress=0.5, workload_id=wid, lease_owner=owner, lease_expires=expires, created_at=now,
            updated_at=now))
        bind.execute(sa.update(w).where(w.c.id == wid).values(constraints=c))


def downgrade() -> None:
    bind = op.get_bind()
    w = sa.table("workloads", sa.column("id", sa.Integer), sa.column("state", sa.String),
                 sa.column("constraints", sa.JSON))
    t = sa.table("tasks", sa.column("kind", sa.String), sa.column("state", sa.String),
                 sa.column("workload_id", sa.Integer), sa.column("journal", sa.JSON))
    rows = bind.execute(sa.select(t.c.workload_id, t.c.journal).where(
        t.c.kind == "migrate", t.c.state == "running", t.c.workload_id.isnot(None))).all()
    for wid, journal in rows:
        cur = bind.execute(sa.select(w.c.constraints).where(w.c.id == wid, w.c.state == "migrating")).first()
        if cur is not None and journal and journal.get("to"):
            back = {k: journal[k] for k in ("from", "to", "state")}
            bind.execute(sa.update(w).where(w.c.id == wid).values(
                constraints={**dict(cur[0] or {}), "migration": back}))
    for ix in ("ix_tasks_parent_id", "ix_tasks_project", "ix_tasks_workload_state", "ix_tasks_state_lease"):
        op.drop_index(ix, table_name="tasks")
    op.drop_table("tasks")
