"""Storage pools (devices, volumes, segment placement, attachments) and memory pooling state.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "storage_pools",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("oversubscription", sa.Float, nullable=False),
        sa.Column("segment_mib", sa.Integer, nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("compute_pool_id", sa.Integer, sa.ForeignKey("pools.id"), nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "storage_devices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("storage_pools.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id"), nullable=True),
        sa.Column("capacity_mib", sa.Integer, nullable=False),
        sa.Column("klass", sa.String(16), nullable=False),
        sa.Column("domain", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("path", sa.String(1024), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("pool_id", "name"),
    )
    op.create_index("ix_storage_devices_pool_id", "storage_devices", ["pool_id"])
    op.create_index("ix_storage_devices_host_id", "storage_devices", ["host_id"])
    op.create_table(
        "volumes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("storage_pools.id"), nullable=False),
        sa.Column("size_mib", sa.Integer, nullable=False),
        sa.Column("thin", sa.Boolean, nullable=False),
        sa.Column("klass", sa.String(16), nullable=True),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_access", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("snapshot_of", sa.Integer, sa.ForeignKey("volumes.id", ondelete="SET NULL"), nullable=True),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_index("ix_volumes_pool_id", "volumes", ["pool_id"])
    op.create_table(
        "volume_segments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("volume_id", sa.Integer, sa.ForeignKey("volumes.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("replica", sa.Integer, nullable=False),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("storage_devices.id"), nullable=False),
        sa.Column("extents", sa.JSON, nullable=False),
        sa.UniqueConstraint("volume_id", "segment", "replica"),
    )
    op.create_index("ix_volume_segments_volume_id", "volume_segments", ["volume_id"])
    op.create_index("ix_volume_segments_device_id", "volume_segments", ["device_id"])
    op.create_table(
        "volume_attachments",
        sa.Column("volume_id", sa.Integer, sa.ForeignKey("volumes.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_volume_attachments_workload_id", "volume_attachments", ["workload_id"])
    op.create_table(
        "memory_state",
        sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("reserved_mib", sa.Float, nullable=False),
        sa.Column("granted_mib", sa.Float, nullable=True),
        sa.Column("last_active", TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("memory_state")
    op.drop_index("ix_volume_attachments_workload_id", "volume_attachments")
    op.drop_table("volume_attachments")
    op.drop_index("ix_volume_segments_device_id", "volume_segments")
    op.drop_index("ix_volume_segments_volume_id", "volume_segments")
    op.drop_table("volume_segments")
    op.drop_index("ix_volumes_pool_id", "volumes")
    op.drop_table("volumes")
    op.drop_index("ix_storage_devices_host_id", "storage_devices")
    op.drop_index("ix_storage_devices_pool_id", "storage_devices")
    op.drop_table("storage_devices")
    op.drop_table("storage_pools")
