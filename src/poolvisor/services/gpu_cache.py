"""Per-GPU state in the placement cache, and the GPU side of a placement decision.

The cache's ClusterState carries scalar amounts; next to it, a `GpuDevices` (free milli per host
and device) mirrors `host_gpus` and is attached to the state, so the `gpu-devices` filter and the
`fgd-ri` scorer read the devices as the store has them. It is reloaded for exactly the hosts the
cache reloads (their generation moved: the ledger bumps it with every device change). The learned
target workload of `fgd-ri` is fed with every workload created since the cache last looked (the
newest HISTORY at a full load), so every process learns the same mix from the store.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.placement import PlacementPolicy, Request, gpufrag, gpushare
from poolvisor.services.records import HOLDING_STATES
from poolvisor.state.cluster import ClusterState
from poolvisor.store.prepared import Prepared, PreparedIn
from poolvisor.store.rows import HostGpuRow, WorkloadRow

if TYPE_CHECKING:  # placement_cache.py imports this module
    from poolvisor.services.placement_cache import PlacementView


def reload_devices(s: Session, snap: PlacementView, ids: list[int], *, all_hosts: bool) -> None:
    """Refresh the free milli of hosts `ids` (of a PlacementView) from `host_gpus`. A host has as
    many device rows as its `gpu` capacity (services/gpus.py), so only hosts with GPUs are read:
    a refresh that reloads none (a CPU host another process changed) sends only the learn query."""
    st: ClusterState = snap.state
    dev: gpushare.GpuDevices | None = snap.gpus
    if all_hosts:
        rows = _DEVICES.all(s, {})
        read = ids
    else:
        gpu = st.resources.index(gpushare.GPU) if gpushare.GPU in st.resources else None
        read = [] if gpu is None else [i for i in ids if st.capacity[gpu, snap.index_of[i]] > 0]
        rows = _DEVICES_OF.all(s, read)
    if dev is None and not rows:
        return  # no GPU devices in the store (yet)
    g = max([dev.free.shape[1] if dev is not None else 1] + [d + 1 for _h, d, _a in rows])
    free = np.zeros((st.n, g), dtype=np.int64)
    if dev is not None:
        old = dev.free
        free[: min(old.shape[0], st.n), : old.shape[1]] = old[: st.n]
    free[[snap.index_of[i] for i in read]] = 0
    for host_id, d, allocated in rows:
        free[snap.index_of[host_id], d] = gpufrag.MILLI - allocated
    if dev is None:
        dev = gpushare.GpuDevices(free)
    else:
        dev.free = free
    _learn(s, snap, dev, full=all_hosts)
    snap.gpus = dev
    gpushare.attach(st, dev)


def _learn(s: Session, snap: PlacementView, dev: gpushare.GpuDevices, *, full: bool) -> None:
    """Feed the requests created since the last look into the learned target workload."""
    rows = sorted(_LEARN_FULL.all(s, {})) if full else _LEARN_SINCE.all(s, {"seen": snap.gpu_seen})
    for _wid, demand in rows:
        try:
            dev.remember(gpushare.pod_of(float(demand.get(gpushare.CPU, 0.0)),
                                         float(demand.get(gpushare.GPU, 0.0))))
        except (InvalidInputError, AttributeError, TypeError, ValueError):
            continue  # a demand no GPU rule applies to (written before the rule): not learned
    top = _TOP.scalar(s, {}) if full else (rows[-1][0] if rows else None)
    snap.gpu_seen = max(snap.gpu_seen, int(top or 0))


# built once (a refresh runs them before most placements)
_DEVICES_Q = select(HostGpuRow.host_id, HostGpuRow.device, HostGpuRow.allocated)
_DEVICES = Prepared(_DEVICES_Q)
_DEVICES_OF = PreparedIn(_DEVICES_Q.where(HostGpuRow.host_id.in_(bindparam("ids", expanding=True))))
_LEARN_FULL = Prepared(select(WorkloadRow.id, WorkloadRow.demand).where(WorkloadRow.state.in_(HOLDING_STATES))
                       .order_by(WorkloadRow.id.desc()).limit(gpushare.HISTORY))
_LEARN_SINCE = Prepared(select(WorkloadRow.id, WorkloadRow.demand).where(WorkloadRow.id > bindparam("seen"))
                        .order_by(WorkloadRow.id))
_TOP = Prepared(select(func.max(WorkloadRow.id)))


# ---- decisions ---------------------------------------------------------------------------------------
def fit_devices(policy: PlacementPolicy, st: ClusterState, req: Request) -> Request:
    """The request limited to hosts whose devices can hold its GPUs, for policies without the
    `gpu-devices` filter (its scalar `gpu` capacity alone cannot see that 0.3 + 0.3 free on two
    GPUs does not hold 0.5); unchanged for those with it, and for requests without GPUs."""
    if "gpu-devices" in policy.filters:
        return req
    pod = gpushare.request_pod(st, req.demand)
    if pod.count == 0:
        return req
    ok = gpushare.devices_of(st).fits(pod)
    if req.allowed_hosts is not None:
        allowed = np.asarray(req.allowed_hosts, dtype=np.int64)
        allowed = allowed[ok[allowed]]
    else:
        allowed = np.flatnonzero(ok)
    return replace(req, allowed_hosts=allowed)


def chosen_devices(policy: PlacementPolicy, st: ClusterState, req: Request, h: int) -> list[int] | None:
    """The GPU a fractional request takes on host h when the policy scores by `fgd-ri` (the GPU
    with the best score); None lets the ledger apply its rule (tightest GPU; whole GPUs: the first
    fully free ones, which is also what fgd-ri assumes)."""
    if not any(name == gpushare.POLICY for name, _w in policy.scorers):
        return None
    pod = gpushare.request_pod(st, req.demand)
    if not pod.shares_gpu:
        return None
    why = gpushare.FgdRiScorer().explain(st, req, [h])
    return [int(why[0]["gpu"])] if why and int(why[0]["gpu"]) >= 0 else None


def whole_gpu_view(snap: PlacementView) -> ClusterState:
    """The view's state as batch planning must see it: batches place whole GPUs only, and a
    whole GPU needs a fully free device, so a host's free `gpu` is its count of fully free devices
    (a copy when they differ; the state itself when the store has no devices)."""
    dev: gpushare.GpuDevices | None = snap.gpus
    st: ClusterState = snap.state
    if dev is None or gpushare.GPU not in st.resources:
        return st
    view = st.copy()
    row = view.resources.index(gpushare.GPU)
    whole = np.count_nonzero(dev.free[: view.n] >= gpufrag.MILLI, axis=1)
    view.allocated[row] = np.maximum(view.allocated[row], view.capacity[row] - whole)
    return view
