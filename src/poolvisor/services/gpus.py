"""GPU devices in the store: what hosts declare, which devices workloads hold, what must hold.

A host's `gpu` capacity counts its GPU devices (a whole number, not overcommitted); each device is
a `host_gpus` row (model, memory, milli allocated). A workload's `gpu` demand is a fraction (< 1,
in steps of 0.001) of ONE device or whole devices (gpushare.pod_of); the ledger records which
devices it holds (`gpu_allocations`), the placement cache mirrors the free milli per device
(gpu_cache.py) for the `gpu-devices` filter and the `fgd-ri` scorer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.resources import check_quantity
from poolvisor.policies.placement import gpufrag, gpushare
from poolvisor.services.records import HOLDING_STATES, GpuDeviceRecord, GpuShareRecord
from poolvisor.store.rows import (
    AllocationRow,
    GpuAllocationRow,
    HostGpuRow,
    HostResourceRow,
    HostRow,
    ProjectRow,
    WorkloadRow,
)

MILLI = gpufrag.MILLI
GPU = gpushare.GPU
MAX_GPUS_PER_HOST = 64
MAX_GPU_GROUPS = 16
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$")


def check_host_gpus(capacity: Mapping[str, float], overcommit: Mapping[str, float] | None,
                    gpus: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, float]]:
    """The devices (model, memory MiB) a new host declares. `gpus`: groups of identical devices,
    ``{"count": 4, "model": "A100", "memory_mib": 40960}``; without them, `capacity["gpu"]`
    anonymous devices. With both, the count must equal the capacity."""
    cap = capacity.get(GPU)
    devices: list[tuple[str, float]] = []
    if gpus is not None:
        if not isinstance(gpus, list | tuple) or len(gpus) > MAX_GPU_GROUPS:
            raise InvalidInputError(f"gpus must be a list of at most {MAX_GPU_GROUPS} device groups")
        for g in gpus:
            if not isinstance(g, Mapping) or set(g) - {"count", "model", "memory_mib"}:
                raise InvalidInputError("a GPU group is {count, model, memory_mib}")
            count, model, mem = g.get("count", 1), g.get("model", ""), g.get("memory_mib", 0.0)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GPUS_PER_HOST:
                raise InvalidInputError(f"GPU count must be an integer in 1..{MAX_GPUS_PER_HOST}")
            if not isinstance(model, str) or (model and _MODEL.fullmatch(model) is None):
                raise InvalidInputError(
                    f"invalid GPU model {model!r}: 1..63 letters, digits, '.', '_', '+', '-'")
            devices += [(model, check_quantity("gpu memory_mib", mem))] * count
        if cap is not None and check_quantity(GPU, cap) != len(devices):
            raise InvalidInputError(f"capacity gpu={cap:g} but {len(devices)} GPU devices are declared")
    elif cap is not None:
        n = check_quantity(GPU, cap)
        if n != int(n):
            raise InvalidInputError(f"capacity gpu={cap:g}: a host has a whole number of GPUs "
                                    "(a workload may ask for a fraction of one)")
        devices = [("", 0.0)] * int(n)
    if len(devices) > MAX_GPUS_PER_HOST:
        raise InvalidInputError(f"a host has at most {MAX_GPUS_PER_HOST} GPUs")
    oc = (overcommit or {}).get(GPU, 1.0)
    if devices and oc != 1.0:
        raise InvalidInputError("GPUs are shared per device (fractions of one GPU), not overcommitted: "
                                "drop the gpu overcommit")
    return devices


def check_gpu_demand(demand: Mapping[str, float]) -> None:
    """A fraction of one GPU in steps of 0.001 (one milli-GPU), or whole GPUs."""
    g = float(demand.get(GPU, 0.0))
    if 0 < g < 1 and abs(g * MILLI - round(g * MILLI)) > 1e-6:
        raise InvalidInputError(f"GPU demand {g:g}: fractions of a GPU go in steps of 0.001")
    gpushare.pod_of(0.0, g)  # 1.5 and the like: InvalidInputError


def add_devices(s: Session, host_id: int, devices: Iterable[tuple[str, float]]) -> None:
    s.add_all(HostGpuRow(host_id=host_id, device=d, model=m, memory_mib=mem, allocated=0)
              for d, (m, mem) in enumerate(devices))


# ---- records ---------------------------------------------------------------------------------------
def host_devices(s: Session, host_ids: Sequence[int]) -> dict[int, list[GpuDeviceRecord]]:
    out: dict[int, list[GpuDeviceRecord]] = defaultdict(list)
    if not host_ids:
        return out
    q = select(HostGpuRow).where(HostGpuRow.host_id.in_(list(host_ids))).order_by(HostGpuRow.host_id,
                                                                                  HostGpuRow.device)
    for r in s.scalars(q):
        out[r.host_id].append(GpuDeviceRecord(r.device, r.model, r.memory_mib, r.allocated,
                                              MILLI - r.allocated))
    return out


def workload_shares(s: Session, workload_ids: Sequence[int]) -> dict[int, list[GpuShareRecord]]:
    out: dict[int, list[GpuShareRecord]] = defaultdict(list)
    if not workload_ids:
        return out
    q = (select(GpuAllocationRow.workload_id, HostRow.name, GpuAllocationRow.device, HostGpuRow.model,
                GpuAllocationRow.milli)
         .join(HostRow, HostRow.id == GpuAllocationRow.host_id)
         .outerjoin(HostGpuRow, (HostGpuRow.host_id == GpuAllocationRow.host_id)
                    & (HostGpuRow.device == GpuAllocationRow.device))
         .where(GpuAllocationRow.workload_id.in_(list(workload_ids)))
         .order_by(GpuAllocationRow.workload_id, GpuAllocationRow.device))
    for wid, host, device, model, milli in s.execute(q):
        out[wid].append(GpuShareRecord(host, device, model or "", milli))
    return out


# ---- invariants ------------------------------------------------------------------------------------
def gpu_violations(s: Session) -> list[str]:
    """9. GPU devices: each device's `allocated` is the sum of its shares and within 0..1000; a
    host's devices number its `gpu` capacity and their milli sum to its scalar `gpu` allocation;
    a workload holding GPU capacity holds devices on its own host that match its demand (one GPU
    for a fraction, n whole ones), and only such a workload holds devices."""
    v: list[str] = []
    hname = dict(s.execute(select(HostRow.id, HostRow.name)).all())
    projects = dict(s.execute(select(ProjectRow.id, ProjectRow.name)).all())
    wl = {w.id: w for w in s.scalars(select(WorkloadRow))}

    def wn(wid: int) -> str:
        w = wl.get(wid)
        return f"{projects.get(w.project_id, '?')}/{w.name}" if w is not None else str(wid)

    devices = {(r.host_id, r.device): r for r in s.scalars(select(HostGpuRow))}
    shares = list(s.scalars(select(GpuAllocationRow)))
    summed: dict[tuple[int, int], int] = defaultdict(int)
    per_workload: dict[int, list[GpuAllocationRow]] = defaultdict(list)
    for a in shares:
        summed[(a.host_id, a.device)] += a.milli
        per_workload[a.workload_id].append(a)
        if not 1 <= a.milli <= MILLI:
            v.append(f"workload {wn(a.workload_id)} holds {a.milli} milli of a GPU (1..{MILLI})")
        if (a.host_id, a.device) not in devices:
            v.append(f"workload {wn(a.workload_id)} holds GPU {a.device} of host "
                     f"{hname.get(a.host_id, a.host_id)}, which has no such device")
    per_host: dict[int, list[HostGpuRow]] = defaultdict(list)
    for key, d in devices.items():
        per_host[key[0]].append(d)
        hn = hname.get(key[0], key[0])
        if d.allocated != summed.get(key, 0):
            v.append(f"host {hn} GPU {d.device}: allocated {d.allocated} milli but its shares sum to "
                     f"{summed.get(key, 0)}")
        if not 0 <= d.allocated <= MILLI:
            v.append(f"host {hn} GPU {d.device}: allocated {d.allocated} milli is outside 0..{MILLI}")
    scalar = {r.host_id: r for r in s.scalars(select(HostResourceRow).where(HostResourceRow.resource == GPU))}
    for hid in set(per_host) | {h for h, r in scalar.items() if r.capacity > 0}:
        hn, devs = hname.get(hid, hid), per_host.get(hid, [])
        r = scalar.get(hid)
        cap, alloc = (r.capacity, r.allocated) if r is not None else (0.0, 0.0)
        if len(devs) != int(round(cap)):
            v.append(f"host {hn} declares gpu={cap:g} but has {len(devs)} GPU devices")
        milli = sum(d.allocated for d in devs)
        if abs(alloc * MILLI - milli) > 1e-3:
            v.append(f"host {hn}: gpu allocated {alloc:g} but its devices hold {milli} milli")
    held = dict(s.execute(select(AllocationRow.workload_id, AllocationRow.amount)
                          .where(AllocationRow.resource == GPU)).all())
    for wid in set(held) | set(per_workload):
        w, got = wl.get(wid), per_workload.get(wid, [])
        if w is None or w.state not in HOLDING_STATES:
            if got:
                v.append(f"workload {wn(wid)} holds GPU devices but no allocation")
            continue
        if any(a.host_id != w.host_id for a in got):
            v.append(f"workload {wn(wid)} holds GPU devices on another host than its own")
        try:
            pod = gpushare.pod_of(0.0, float(held.get(wid, 0.0)))
        except InvalidInputError:
            v.append(f"workload {wn(wid)} holds gpu {held.get(wid, 0.0):g}: "
                     "neither a fraction nor whole GPUs")
            continue
        if sorted(a.milli for a in got) != [pod.milli] * pod.count:
            v.append(f"workload {wn(wid)} holds gpu {held.get(wid, 0.0):g} but GPU shares "
                     f"{sorted(a.milli for a in got)} milli")
    return v
