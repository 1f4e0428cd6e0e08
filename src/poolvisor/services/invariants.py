"""The store's invariants, checked from the rows alone (used by Services.check and `poolvisor check`).

1. For every host and resource, `host_resources.allocated` equals the sum of the ledger
   (`allocations`), and never exceeds capacity * overcommit nor drops below zero.
2. A workload is on at most one host: its ledger rows name one host, the one the workload row names;
   a workload holding capacity has a host, one that lost it holds nothing.
3. No allocation sits on a host that is down or fenced.
4. `hosts.workloads` counts the workloads holding capacity there.
5. No workload is stuck in a transient state (placing, migrating, deleting) past its lease: its
   process died and no repair has resolved it yet (a live process renews its leases).
6. No task is orphaned: running with an expired lease (its process died and no recovery resumed
   or rolled it back yet); a migration whose move committed is reported once, by 5. A queued task
   past its lease only waits for an executor (counted).
7. Every task journal agrees with the workloads: a migrating workload has exactly one running
   migrate task whose journal moves it onto the host it now holds; a running migrate task whose
   move committed names a workload that is migrating to that host.
8. Address pools, NICs and router interfaces agree (services/networks.py).
9. A snapshot being created or restored has its active task (services/vm_snapshots.py).
10.-11. Storage replicas and attachments (services/volumes.py), memory reservations
    (services/memory.py): each module states its own.
12. GPU devices: each device's allocation is the sum of the shares workloads hold, within one GPU;
    a host's devices match its `gpu` capacity and scalar allocation; a workload holding GPUs holds
    devices of its own host that match its demand (services/gpus.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from poolvisor.services.backups import backup_violations
from poolvisor.services.base import as_utc
from poolvisor.services.gpus import gpu_violations
from poolvisor.services.leases import LEGACY_STALE_S, TRANSIENT, utcnow
from poolvisor.services.memory import memory_violations
from poolvisor.services.networks import network_violations
from poolvisor.services.records import HOLDING_STATES, CheckReport
from poolvisor.services.tasks import MIGRATE, orphaned
from poolvisor.services.vm_snapshots import snapshot_violations
from poolvisor.services.volumes import storage_violations
from poolvisor.store.rows import AllocationRow, HostResourceRow, HostRow, ProjectRow, TaskRow, WorkloadRow

TOL = 1e-6


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


def check_invariants(s: Session, now: datetime | None = None) -> CheckReport:
    v: list[str] = []
    hosts = {h.id: h for h in s.scalars(select(HostRow))}
    projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
    workloads = {w.id: w for w in s.scalars(select(WorkloadRow))}
    wname = {i: f"{projects.get(w.project_id, '?')}/{w.name}" for i, w in workloads.items()}
    hname = {i: h.name for i, h in hosts.items()}
    allocs = list(s.scalars(select(AllocationRow)))

    ledger: dict[tuple[int, str], float] = defaultdict(float)
    hosts_of: dict[int, set[int]] = defaultdict(set)
    for a in allocs:
        ledger[(a.host_id, a.resource)] += a.amount
        hosts_of[a.workload_id].add(a.host_id)
        if a.amount < 0:
            v.append(f"allocation of {a.amount:g} {a.resource} by {wname.get(a.workload_id, a.workload_id)} "
                     "is negative")

    # 1. ledger sums vs what hosts record; capacity
    seen = set()
    for r in s.scalars(select(HostResourceRow)):
        key = (r.host_id, r.resource)
        seen.add(key)
        total = ledger.get(key, 0.0)
        hn = hname.get(r.host_id, str(r.host_id))
        if not _close(total, r.allocated):
            v.append(f"host {hn}: {r.resource} allocated {r.allocated:g} but allocations sum to {total:g}")
        limit = r.capacity * r.overcommit
        if r.allocated > limit + TOL * max(1.0, limit):
            v.append(f"host {hn}: {r.resource} allocated {r.allocated:g} exceeds capacity {limit:g}")
        if r.allocated < -TOL:
            v.append(f"host {hn}: {r.resource} allocated {r.allocated:g} is negative")
    for (hid, res), total in ledger.items():
        if (hid, res) not in seen:
            v.append(f"host {hname.get(hid, hid)}: allocations of {total:g} {res}, "
                     "which the host does not have")

    # 2. one host per workload, consistent with the workload row
    for wid, hs in hosts_of.items():
        w = workloads.get(wid)
        name = wname.get(wid, str(wid))
        if len(hs) > 1:
            v.append(f"workload {name} holds allocations on {len(hs)} hosts: "
                     f"{', '.join(sorted(hname.get(h, str(h)) for h in hs))}")
        if w is None:
            continue
        if w.state not in HOLDING_STATES:
            v.append(f"workload {name} is {w.state} but still holds allocations")
        elif w.host_id not in hs:
            on = hname.get(w.host_id or -1, str(w.host_id))
            v.append(f"workload {name} is on host {on} but its allocations are on"
                     f" {', '.join(sorted(hname.get(h, str(h)) for h in hs))}")
    for wid, wl in workloads.items():
        if wl.state in HOLDING_STATES and wl.host_id is None:
            v.append(f"workload {wname[wid]} is {wl.state} without a host")

    # 3. nothing allocated on down or fenced hosts
    for hid, hr in hosts.items():
        if hr.state in ("down", "fenced"):
            held = [k for k in ledger if k[0] == hid and ledger[k] > TOL]
            if held:
                v.append(f"host {hr.name} is {hr.state} but holds allocations ({len(held)} resources)")

    # 4. per-host workload counts
    counts = dict(s.execute(select(WorkloadRow.host_id, func.count())
                            .where(WorkloadRow.state.in_(HOLDING_STATES), WorkloadRow.host_id.isnot(None))
                            .group_by(WorkloadRow.host_id)).all())
    for hid, hr in hosts.items():
        if hr.workloads != counts.get(hid, 0):
            v.append(f"host {hr.name} records {hr.workloads} workloads but "
                     f"{counts.get(hid, 0)} are placed there")

    # 5. use cases stuck past their lease
    in_flight = 0
    now = now or utcnow()
    for wid, wl in workloads.items():
        if wl.state not in TRANSIENT:
            continue
        if wl.lease_expires is not None:
            late = (now - as_utc(wl.lease_expires)).total_seconds()
            why = f"its lease (owner {wl.lease_owner}) expired {late:.1f} s ago"
        else:  # left by a version without leases
            late = (now - as_utc(wl.updated_at) - timedelta(seconds=LEGACY_STALE_S)).total_seconds()
            why = f"it has no lease and was last updated {late + LEGACY_STALE_S:.0f} s ago"
        if late < 0:
            in_flight += 1
        else:
            v.append(f"workload {wname[wid]} is stuck {wl.state}: {why}; no repair has resolved it "
                     "(a running `poolvisor serve` sweeps such workloads)")

    # 6. orphaned tasks; 7. task journals vs workloads
    for t in orphaned(s, now):
        if t.kind == MIGRATE and t.workload_id in workloads and workloads[t.workload_id].state == "migrating":
            continue  # its move committed: reported once, as the workload stuck migrating (5.)
        late = (now - as_utc(t.lease_expires)).total_seconds() if t.lease_expires is not None else 0.0
        v.append(f"task {t.id} ({t.kind} {t.subject}) is orphaned: running, its lease (owner "
                 f"{t.lease_owner}) expired {late:.1f} s ago; no recovery has resumed or rolled it back")
    waiting = len(orphaned(s, now, "queued"))
    active = list(s.scalars(select(TaskRow).where(TaskRow.state.in_(("queued", "running")))))
    moving: dict[int, list[TaskRow]] = defaultdict(list)
    for t in active:
        committed = t.kind == MIGRATE and t.state == "running" and (t.journal or {}).get("to")
        if committed and t.workload_id is not None:
            moving[t.workload_id].append(t)
    for wid, wl in workloads.items():
        if wl.state != "migrating":
            continue
        ts = moving.get(wid, [])
        if len(ts) != 1:
            v.append(f"workload {wname[wid]} is migrating but {len(ts)} running migrate tasks "
                     "journal its move")
        elif ts[0].journal.get("to") != hname.get(wl.host_id or -1):
            v.append(f"workload {wname[wid]} is migrating on {hname.get(wl.host_id or -1)} but task "
                     f"{ts[0].id}'s journal moves it to {ts[0].journal.get('to')}")
    for wid, ts in moving.items():
        wl2 = workloads.get(wid)
        if wl2 is None or wl2.state != "migrating":
            for t in ts:
                v.append(f"task {t.id} journals a committed move of workload {wname.get(wid, wid)}, "
                         f"which is {wl2.state if wl2 is not None else 'gone'}")

    v += network_violations(s)  # 8. address pools, NICs and router interfaces (services/networks.py)
    v += snapshot_violations(s)  # 9.
    v += storage_violations(s, now)  # 10. storage replicas, extents and attachments (services/volumes.py)
    v += memory_violations(s)  # 11. memory reservations never overcommitted (services/memory.py)
    v += gpu_violations(s)  # 12. GPU devices and the shares workloads hold (services/gpus.py)
    v += backup_violations(s)  # 13. no backup left creating/restoring without its task (services/backups.py)
    return CheckReport(
        ok=not v, violations=v,
        counts={"hosts": len(hosts), "workloads": len(workloads), "allocations": len(allocs),
                "in_flight": in_flight, "tasks_active": len(active), "tasks_waiting": waiting,
                "violations": len(v)},
    )
