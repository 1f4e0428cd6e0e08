"""The store's invariants, checked from the rows alone (used by Services.check and `poolvisor check`).

1. For every host and resource, `host_resources.allocated` equals the sum of the ledger
   (`allocations`), and never exceeds capacity * overcommit nor drops below zero.
2. A workload is on at most one host: its ledger rows name one host, the one the workload row names;
   a workload holding capacity has a host, one that lost it holds nothing.
3. No allocation sits on a host that is down or fenced.
4. `hosts.workloads` counts the workloads holding capacity there.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from poolvisor.services.networks import network_violations
from poolvisor.services.records import HOLDING_STATES, CheckReport
from poolvisor.store.rows import AllocationRow, HostResourceRow, HostRow, ProjectRow, WorkloadRow

TOL = 1e-6


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


def check_invariants(s: Session) -> CheckReport:
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

    v += network_violations(s)  # 5. address pools, NICs and router interfaces (services/networks.py)
    return CheckReport(
        ok=not v, violations=v,
        counts={"hosts": len(hosts), "workloads": len(workloads), "allocations": len(allocs),
                "violations": len(v)},
    )
