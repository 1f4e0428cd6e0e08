"""Networks: IP/MAC address pools as free and allocated intervals, virtual networks, NICs, virtual
routers with interfaces and static routes; the global MAC pool (02:00:00:00:00:00/8, locally
administered unicast) is created here.

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
KEY = sa.LargeBinary(16)
MAC_FIRST = (0x02_00_00_00_00_00).to_bytes(16, "big")
MAC_LAST = (0x02_FF_FF_FF_FF_FF).to_bytes(16, "big")


def upgrade() -> None:
    op.create_table(
        "ip_pools",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("family", sa.String(8), nullable=False),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("first", KEY, nullable=False),
        sa.Column("last", KEY, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "ip_free",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("ip_pools.id", ondelete="CASCADE"), nullable=False),
        sa.Column("first", KEY, nullable=False),
        sa.Column("last", KEY, nullable=False),
        sa.UniqueConstraint("pool_id", "first"),
    )
    op.create_index("ix_ip_free_pool_last", "ip_free", ["pool_id", "last"])
    op.create_table(
        "ip_allocations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("ip_pools.id", ondelete="CASCADE"), nullable=False),
        sa.Column("first", KEY, nullable=False),
        sa.Column("last", KEY, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("pool_id", "first"),
    )
    op.create_table(
        "networks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("pool_id", sa.Integer, sa.ForeignKey("ip_pools.id"), nullable=False, unique=True),
        sa.Column("cidr", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "nics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id"), nullable=False),
        sa.Column("network_id", sa.Integer, sa.ForeignKey("networks.id"), nullable=False),
        sa.Column("address", KEY, nullable=False),
        sa.Column("mac", KEY, nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("network_id", "address"),
        sa.UniqueConstraint("workload_id", "network_id"),
    )
    op.create_index("ix_nics_workload_id", "nics", ["workload_id"])
    op.create_index("ix_nics_network_id", "nics", ["network_id"])
    op.create_table(
        "routers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("protocol", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "router_interfaces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("router_id", sa.Integer, sa.ForeignKey("routers.id"), nullable=False),
        sa.Column("network_id", sa.Integer, sa.ForeignKey("networks.id"), nullable=False),
        sa.Column("address", KEY, nullable=False),
        sa.Column("mac", KEY, nullable=False, unique=True),
        sa.Column("cost", sa.Integer, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.UniqueConstraint("router_id", "network_id"),
        sa.UniqueConstraint("network_id", "address"),
    )
    op.create_index("ix_router_interfaces_network_id", "router_interfaces", ["network_id"])
    op.create_table(
        "static_routes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("router_id", sa.Integer, sa.ForeignKey("routers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("prefix", sa.String(64), nullable=False),
        sa.Column("nexthop", sa.String(64), nullable=False),
        sa.Column("metric", sa.Integer, nullable=False),
        sa.UniqueConstraint("router_id", "prefix", "nexthop"),
    )
    bind = op.get_bind()
    bind.execute(sa.text("INSERT INTO ip_pools (project_id, name, family, cidr, first, last, generation, "
                         "created_at) VALUES (NULL, 'mac', 'mac', '02:00:00:00:00:00/8', :f, :l, 0, "
                         "CURRENT_TIMESTAMP)"), {"f": MAC_FIRST, "l": MAC_LAST})
    bind.execute(sa.text("INSERT INTO ip_free (pool_id, first, last) SELECT id, :f, :l FROM ip_pools "
                         "WHERE family = 'mac'"), {"f": MAC_FIRST, "l": MAC_LAST})


def downgrade() -> None:
    op.drop_table("static_routes")
    op.drop_index("ix_router_interfaces_network_id", table_name="router_interfaces")
    op.drop_table("router_interfaces")
    op.drop_table("routers")
    op.drop_index("ix_nics_network_id", table_name="nics")
    op.drop_index("ix_nics_workload_id", table_name="nics")
    op.drop_table("nics")
    op.drop_table("networks")
    op.drop_table("ip_allocations")
    op.drop_index("ix_ip_free_pool_last", table_name="ip_free")
    op.drop_table("ip_free")
    op.drop_table("ip_pools")
