"""Fair-share weights of projects, per-resource reservation/limit/shares of workloads, and each
pool's static allocation policy (min / max / balanced).

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


# Plain ADD/DROP COLUMN (not a batch copy): dropping a copy of `workloads` would cascade.
def upgrade() -> None:
    op.add_column("projects", sa.Column("weight", sa.Float, nullable=False, server_default="1"))
    op.add_column("pools", sa.Column("allocation_policy", sa.String(16), nullable=False,
                                     server_default="max"))
    op.add_column("workloads", sa.Column("resource_spec", sa.JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("workloads", "resource_spec")
    op.drop_column("pools", "allocation_policy")
    op.drop_column("projects", "weight")
