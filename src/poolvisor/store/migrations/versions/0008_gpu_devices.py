"""GPU devices and per-device allocations; path-vector routers (AS number, local preference).

`host_gpus`: one row per GPU of a host (as many as its whole `gpu` capacity), with its model,
memory and the milli-GPU allocated on it. `gpu_allocations`: which devices each workload holds and
how many milli of each. Existing hosts get anonymous devices and the GPUs their workloads already
hold are assigned on the way up: whole GPUs first (the first fully free ones), then each fraction on
the tightest GPU with room (the ledger's rule); a fraction that no longer fits on one device is left
unassigned, which `poolvisor check` then reports.

`routers.asn` and `routers.local_pref` (neighbour router -> preference): the path-vector protocol's
autonomous-system number and import policy.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import math
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MILLI = 1000
HOLDING = ("placing", "running", "stopped", "suspended", "migrating", "deleting")


def upgrade() -> None:
    op.create_table(
        "host_gpus",
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("device", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("memory_mib", sa.Float, nullable=False),
        sa.Column("allocated", sa.Integer, nullable=False),
    )
    op.create_table(
        "gpu_allocations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id"), nullable=False),
        sa.Column("device", sa.Integer, nullable=False),
        sa.Column("milli", sa.Integer, nullable=False),
        sa.UniqueConstraint("workload_id", "host_id", "device"),
    )
    op.create_index("ix_gpu_allocations_workload_id", "gpu_allocations", ["workload_id"])
    op.create_index("ix_gpu_allocations_host_device", "gpu_allocations", ["host_id", "device"])
    with op.batch_alter_table("routers") as b:
        b.add_column(sa.Column("asn", sa.BigInteger, nullable=True))
        b.add_column(sa.Column("local_pref", sa.JSON, nullable=False, server_default=sa.text("'{}'")))
        b.create_unique_constraint("uq_routers_project_asn", ["project_id", "asn"])
    _backfill(op.get_bind())


def _backfill(conn: sa.Connection) -> None:
    """Devices for the GPU hosts there are, and the devices of the GPUs their workloads hold."""
    md = sa.MetaData()
    md.reflect(conn, only=("host_resources", "allocations", "workloads", "host_gpus", "gpu_allocations"))
    hr, al, wl = md.tables["host_resources"], md.tables["allocations"], md.tables["workloads"]
    free: dict[int, list[int]] = {}
    for host_id, cap in conn.execute(sa.select(hr.c.host_id, hr.c.capacity).where(hr.c.resource == "gpu")):
        n = int(math.floor(cap + 1e-9))
        if n > 0:
            free[host_id] = [MILLI] * n
    held: dict[int, list[tuple[int, int, float]]] = defaultdict(list)  # host -> (workload, ..., amount)
    q = (sa.select(al.c.workload_id, al.c.host_id, al.c.amount).join(wl, wl.c.id == al.c.workload_id)
         .where(al.c.resource == "gpu", al.c.amount > 0, wl.c.state.in_(HOLDING)).order_by(al.c.workload_id))
    for wid, host_id, amount in conn.execute(q):
        held[host_id].append((wid, host_id, float(amount)))
    shares = []
    for host_id, items in held.items():
        row = free.get(host_id)
        if row is None:
            continue
        # whole GPUs first (as the ledger does for each), then the fractions, tightest GPU first
        for wid, _h, amount in sorted(items, key=lambda it: (it[2] < 1, it[0])):
            shares += [(wid, host_id, d, m) for d, m in _take(row, amount)]
    devices = [{"host_id": h, "device": d, "model": "", "memory_mib": 0.0, "allocated": MILLI - left}
               for h, row in free.items() for d, left in enumerate(row)]
    if devices:
        conn.execute(md.tables["host_gpus"].insert(), devices)
    if shares:
        conn.execute(md.tables["gpu_allocations"].insert(), [
            {"workload_id": w, "host_id": h, "device": d, "milli": m} for w, h, d, m in shares])


def _take(row: list[int], amount: float) -> list[tuple[int, int]]:
    if amount < 1:
        milli = max(1, int(round(amount * MILLI)))
        fits = [d for d, left in enumerate(row) if left >= milli]
        if not fits:
            return []
        d = min(fits, key=lambda k: (row[k], k))
        row[d] -= milli
        return [(d, milli)]
    whole = [d for d, left in enumerate(row) if left == MILLI][: int(round(amount))]
    if len(whole) < int(round(amount)):
        return []
    for d in whole:
        row[d] = 0
    return [(d, MILLI) for d in whole]


def downgrade() -> None:
    with op.batch_alter_table("routers") as b:
        b.drop_constraint("uq_routers_project_asn", type_="unique")
        b.drop_column("local_pref")
        b.drop_column("asn")
    op.drop_index("ix_gpu_allocations_host_device", table_name="gpu_allocations")
    op.drop_index("ix_gpu_allocations_workload_id", table_name="gpu_allocations")
    op.drop_table("gpu_allocations")
    op.drop_table("host_gpus")
