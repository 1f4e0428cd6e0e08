"""Leases on transient workloads (continuous crash repair); token expiry, revocation and provenance.

workloads: `lease_owner` (the process running the use case) and `lease_expires` (renewed while it
runs), indexed with `state` so the repair sweep finds expired leases without a scan. Rows left in a
transient state by an older version have no lease; repair treats them by age (services/leases.py).

tokens: `label`, `hint` (the first characters, to recognize a token in a list), `created_by`,
`expires_at` (optional) and `revoked_at`; existing tokens stay valid and never expire.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("workloads") as b:
        b.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        b.add_column(sa.Column("lease_expires", TS, nullable=True))
    op.create_index("ix_workloads_state_lease", "workloads", ["state", "lease_expires"])
    with op.batch_alter_table("tokens") as b:
        b.add_column(sa.Column("label", sa.String(63), nullable=False, server_default=""))
        b.add_column(sa.Column("hint", sa.String(16), nullable=False, server_default=""))
        b.add_column(sa.Column("created_by", sa.Integer, nullable=True))
        b.add_column(sa.Column("expires_at", TS, nullable=True))
        b.add_column(sa.Column("revoked_at", TS, nullable=True))
        b.create_foreign_key("fk_tokens_created_by", "tokens", ["created_by"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("tokens") as b:
        b.drop_constraint("fk_tokens_created_by", type_="foreignkey")
        for col in ("revoked_at", "expires_at", "created_by", "hint", "label"):
            b.drop_column(col)
    op.drop_index("ix_workloads_state_lease", table_name="workloads")
    with op.batch_alter_table("workloads") as b:
        b.drop_column("lease_expires")
        b.drop_column("lease_owner")
