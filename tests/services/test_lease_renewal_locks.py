"""Lease renewal never holds one row while waiting for another (PostgreSQL): renewing many rows in
one UPDATE deadlocked with this process's writer confirming or deleting several of them in one
group transaction, and `deadlock_timeout` (1 s) stalled one of the two before aborting it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import select, update
from svc_helpers import small_cluster

from poolvisor.services import open_services
from poolvisor.services.base import as_utc
from poolvisor.services.leases import utcnow
from poolvisor.services.records import PLACING
from poolvisor.store.rows import WorkloadRow


def test_renewal_waits_for_a_locked_row_without_holding_others(db_url):
    svc = open_services(db_url, lease_s=60.0)
    try:
        small_cluster(svc)
        for name in ("a", "b"):
            svc.workloads.create_workload("demo", name, flavor="unit")
        old = utcnow() + timedelta(seconds=5)

        def placing(s):  # both in flight under this process's lease, which runs out in 5 s
            s.execute(update(WorkloadRow).values(state=PLACING, lease_owner=svc.leases.owner,
                                                 lease_expires=old))
            return sorted(s.scalars(select(WorkloadRow.id)))

        ids = svc.store.run(placing)
        failed: list[BaseException] = []  # what the renewal's transactions raised (a deadlock: retried)
        run_once = svc.store.run_once

        def watched(*args, **kw):
            try:
                return run_once(*args, **kw)
            except Exception as e:
                failed.append(e)
                raise

        svc.store.run_once = watched  # type: ignore[method-assign]
        a, b = ids
        other = svc.store.engine.connect()  # another transaction (the writer's group, say): holds b
        tx = other.begin()
        other.execute(update(WorkloadRow).where(WorkloadRow.id == b).values(updated_at=utcnow()))
        box: dict = {}
        with svc.leases.hold(ids):
            t = threading.Thread(target=lambda: box.setdefault("n", svc.leases.renew()))
            t.start()
            time.sleep(0.5)  # renewal waits for b (PostgreSQL) or for the write lock (SQLite)
            if svc.store.is_sqlite:
                tx.commit()  # SQLite: one writer at a time, the renewal runs after this one
            else:  # the group goes on to a: it must not find a held by the renewal waiting on b
                other.execute(update(WorkloadRow).where(WorkloadRow.id == a).values(updated_at=utcnow()))
                tx.commit()
            other.close()
            t.join(30)
            assert not t.is_alive() and box["n"] == 2 and not failed, failed

        def leases(s):
            return list(s.scalars(select(WorkloadRow.lease_expires).order_by(WorkloadRow.id)))

        assert all(as_utc(e) > old + timedelta(seconds=30) for e in svc.store.run(leases, write=False))
    finally:
        svc.close()
