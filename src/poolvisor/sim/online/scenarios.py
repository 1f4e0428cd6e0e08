"""Scenarios: a trace turned into (fleet factory, workload, fragmentation model, host events).

* Alibaba GPU 2023: the 1,523 real nodes (CPU, memory, GPUs of 1000 milli each). ``replay`` mode
  uses the pods' creation/deletion times (optionally compressed by ``speedup`` to raise the load);
  ``fill`` mode is the FGD paper's methodology: pods arrive in trace order, then resampled
  (seeded), never leave, until the requested GPU reaches ``load`` x the cluster's GPUs; time is
  then the arrived GPU load as a fraction of capacity.
* Azure V1: a configurable fleet (homogeneous ``--hosts`` of one size, or a mix) against the
  flavour arrivals with durations; the measure's primary resource is vCPU.
* Google 2011: machine events give the fleet and its availability; task instances are placed
  from their requests (normalized CPU and memory), primary resource CPU.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.online.engine import HostEvents, OnlineResult, replay
from poolvisor.sim.online.fleet import MILLI, Fleet
from poolvisor.sim.online.fragmentation import FragModel, TaskTypes
from poolvisor.sim.online.policies import make_policy
from poolvisor.sim.online.weights import ProjectWeights
from poolvisor.traces import alibaba as ali
from poolvisor.traces import azure as az
from poolvisor.traces import google as gg
from poolvisor.traces.workload import Workload


@dataclass(frozen=True)
class Scenario:
    name: str
    make_fleet: Callable[[], Fleet]
    workload: Workload
    model: FragModel
    host_events: HostEvents | None = None
    time_unit: str = "s"
    horizon: float | None = None
    description: str = ""


def run(
    scn: Scenario,
    policies: list[str],
    *,
    samples: int = 300,
    check: bool = False,
    progress: Callable[[int], None] | None = None,
    queue: str | None = None,
    weights: ProjectWeights | None = None,
) -> list[OnlineResult]:
    """Replay the scenario once per policy, each on a fresh fleet (``queue``: arrivals that do
    not fit wait, served in that discipline, ``weights`` the projects' drf weights; engine.replay)."""
    vec = weights.vector(scn.workload.project_names) if weights is not None else None
    out = []
    for name in policies:
        out.append(
            replay(
                scn.make_fleet(),
                scn.workload,
                make_policy(name),
                scn.model,
                host_events=scn.host_events,
                samples=samples,
                horizon=scn.horizon,
                time_unit=scn.time_unit,
                check=check,
                progress=progress,
                queue=queue,
                weights=vec,
            )
        )
        if weights is not None and out[-1].queue is not None:
            out[-1].queue["weights"] = weights.report(scn.workload.project_names)
    return out


# ---- Alibaba ------------------------------------------------------------------------------------
def alibaba_fleet(nodes: ali.AlibabaNodes) -> Callable[[], Fleet]:
    cap = np.stack([nodes.cpu_milli, nodes.memory_mib, nodes.gpus * MILLI], 1).astype(np.float64)
    names = nodes.names.tolist()

    def make() -> Fleet:
        return Fleet(names, ali.RESOURCES, cap, devices=nodes.gpus, device_resource="gpu_milli")

    return make


def inflate(wl: Workload, primary: np.ndarray, capacity: float, load: float, seed: int) -> Workload:
    """Trace order first, then seeded resampling, until sum(primary) >= load x capacity; jobs never
    leave and 'time' is the arrived primary demand as a fraction of capacity."""
    if capacity <= 0 or load <= 0:
        raise InvalidInputError("fill mode needs a positive capacity and --load")
    target = load * capacity
    total = float(primary.sum())
    rng = np.random.default_rng(seed)
    idx = [np.arange(len(wl))]
    acc = total
    while acc < target and total > 0:
        extra = rng.integers(0, len(wl), size=max(1, len(wl)))
        idx.append(extra)
        acc += float(primary[extra].sum())
    order = np.concatenate(idx)
    cum = np.cumsum(primary[order])
    stop = int(np.searchsorted(cum, target, side="left")) + 1
    order = order[:stop]
    arrived = np.concatenate([[0.0], cum[: stop - 1]]) / capacity
    return Workload(
        name=f"{wl.name} fill to {load:g}",
        resources=wl.resources,
        arrival=arrived,
        departure=np.full(order.size, np.inf),
        demand=wl.demand[order],
        gpu_count=wl.gpu_count[order],
        gpu_milli=wl.gpu_milli[order],
        kind=wl.kind[order],
        kind_names=wl.kind_names,
        project=wl.project[order],
        project_names=wl.project_names,
        rank=wl.rank[order],
    )


def alibaba(
    directory: str | Path,
    *,
    mode: Literal["replay", "fill"] = "replay",
    speedup: float = 1.0,
    load: float = 1.0,
    seed: int = 0,
    limit: int | None = None,
    coverage: float = 0.99,
) -> Scenario:
    tr = ali.load_alibaba(directory)
    wl = tr.pods.to_workload()
    if limit is not None:
        wl = wl.head(limit)
    if len(wl) == 0:
        raise InvalidInputError("no pods to replay")
    types = TaskTypes.from_demands(wl.demand[:, [0]], wl.gpu_count, wl.gpu_milli, coverage)
    model = FragModel(types, gate_rows=(0,), primary_row=None)
    make = alibaba_fleet(tr.nodes)
    gpu_cap = float(tr.nodes.gpus.sum() * MILLI)
    if mode == "fill":
        wl = inflate(wl, wl.demand[:, 2], gpu_cap, load, seed)
        desc = (f"{len(tr.nodes):,} nodes, {int(tr.nodes.gpus.sum()):,} GPUs; pods in trace order then "
                f"resampled (seed {seed}) until requested GPU = {load:g} x capacity; no departures")
        return Scenario("alibaba", make, wl, model, time_unit="GPU load", description=desc)
    if mode != "replay":
        raise InvalidInputError(f"unknown mode {mode!r}; use replay or fill")
    if speedup <= 0:
        raise InvalidInputError("--speedup must be > 0")
    if speedup != 1.0:
        dur = wl.departure - wl.arrival
        arr = wl.arrival / speedup
        wl = replace(wl, name=f"{wl.name} x{speedup:g}", arrival=arr, departure=arr + dur)
    desc = (f"{len(tr.nodes):,} nodes, {int(tr.nodes.gpus.sum()):,} GPUs; {len(wl):,} pods at their "
            f"creation times{f' / {speedup:g}' if speedup != 1 else ''}, leaving at deletion")
    return Scenario("alibaba", make, wl, model, description=desc)


# ---- Azure --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostGroup:
    count: int
    vcpu: float
    memory_gb: float


def parse_fleet(spec: str) -> list[HostGroup]:
    """'64x512:800,32x256:400' = 800 hosts of 64 vCPU / 512 GB plus 400 of 32 / 256."""
    groups = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*([0-9.]+)x([0-9.]+):(\d+)\s*", part)
        if not m:
            raise InvalidInputError(f"bad fleet group {part!r}; expected VCPUxGB:COUNT, e.g. 64x512:800")
        g = HostGroup(int(m.group(3)), float(m.group(1)), float(m.group(2)))
        if g.count <= 0 or g.vcpu <= 0 or g.memory_gb <= 0:
            raise InvalidInputError(f"fleet group {part!r}: counts and sizes must be > 0")
        groups.append(g)
    return groups


def vm_fleet(groups: list[HostGroup], resources: tuple[str, str]) -> Callable[[], Fleet]:
    cap = np.concatenate([np.tile([g.vcpu, g.memory_gb], (g.count, 1)) for g in groups])
    names = [f"host-{i:05d}" for i in range(cap.shape[0])]

    def make() -> Fleet:
        return Fleet(names, resources, cap)

    return make


def azure(
    directory: str | Path,
    *,
    hosts: int = 1000,
    vcpu: float = 64.0,
    memory_gb: float = 512.0,
    fleet: str | None = None,
    limit_bins: int | None = None,
    duration: Literal["mid", "low", "high"] = "mid",
) -> Scenario:
    tr = az.read_azure(directory)
    wl = tr.to_workload(duration)
    if limit_bins is not None:
        if limit_bins <= 0:
            raise InvalidInputError("--limit-bins must be > 0")
        wl = wl.until(float(wl.arrival[0]) + limit_bins * az.BIN_S)
    if len(wl) == 0:
        raise InvalidInputError("no VMs to replay")
    groups = parse_fleet(fleet) if fleet else [HostGroup(hosts, vcpu, memory_gb)]
    if not fleet and hosts <= 0:
        raise InvalidInputError("--hosts must be > 0")
    one = np.ones(len(wl), dtype=np.int64)
    types = TaskTypes.from_demands(wl.demand[:, [1]], one, wl.demand[:, 0], coverage=1.0)
    model = FragModel(types, gate_rows=(1,), primary_row=0)
    total = sum(g.count for g in groups)
    sizes = ", ".join(f"{g.count} x {g.vcpu:g} vCPU/{g.memory_gb:g} GB" for g in groups)
    desc = (f"{total:,} hosts ({sizes}); {len(wl):,} VMs, durations = {duration} of their bin, "
            "censored VMs never leave")
    return Scenario("azure", vm_fleet(groups, az.RESOURCES), wl, model,
                    horizon=float(wl.arrival[-1]), description=desc)


# ---- Google -------------------------------------------------------------------------------------
def google(directory: str | Path, *, coverage: float = 0.99, limit: int | None = None) -> Scenario:
    tr = gg.load_google(directory)
    fl = tr.fleet
    wl = tr.tasks.to_workload()
    if limit is not None:
        wl = wl.head(limit)
    if len(wl) == 0:
        raise InvalidInputError("no scheduled task instances to replay")
    cap = np.stack([fl.cpu, fl.memory], 1)
    names = [f"m{int(m)}" for m in fl.machine_id]

    def make() -> Fleet:
        return Fleet(names, gg.RESOURCES, cap, up=np.zeros(len(names), dtype=bool))

    events = HostEvents(fl.change_time, fl.change_machine, fl.change_up)
    one = np.ones(len(wl), dtype=np.int64)
    types = TaskTypes.from_demands(wl.demand[:, [1]], one, wl.demand[:, 0], coverage)
    model = FragModel(types, gate_rows=(1,), primary_row=0)
    horizon = float(np.max(np.concatenate([wl.arrival, wl.departure[np.isfinite(wl.departure)]])))
    desc = (f"{len(fl):,} machines from machine events ({int(np.sum(~fl.change_up))} removals); "
            f"{len(wl):,} task instances (SCHEDULE to EVICT/FAIL/FINISH/KILL/LOST)")
    return Scenario("google", make, wl, model, host_events=events, horizon=horizon, description=desc)
