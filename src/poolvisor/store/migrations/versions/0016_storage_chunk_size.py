"""Per-pool object (chunk) size of the `dir` data path: `storage_pools.chunk_mib`.

Existing pools get 1 MiB, the size their objects were written with, so their bytes stay
readable; pools created from now on default to 4 MiB (the service picks it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("storage_pools", sa.Column("chunk_mib", sa.Integer, nullable=False, server_default="1"))


# Plain DROP COLUMN (not a batch copy): dropping a copy of `storage_pools` would cascade.
def downgrade() -> None:
    op.drop_column("storage_pools", "chunk_mib")
