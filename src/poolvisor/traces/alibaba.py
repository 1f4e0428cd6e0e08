"""Alibaba GPU cluster trace 2023 (openb, Weng et al. ATC'23): node list and pod list CSVs.

Nodes: ``sn,cpu_milli,memory_mib,gpu,model`` (a node has ``gpu`` devices of 1000 milli each).
Pods: ``name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
deletion_time,scheduled_time``; a pod with ``num_gpu`` = 1 and ``gpu_milli`` < 1000 shares one GPU,
otherwise it needs ``num_gpu`` devices with ``gpu_milli`` free on each. Times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.preemption import DEFAULT_CLASS, class_rank
from poolvisor.traces.csvcols import read_columns
from poolvisor.traces.workload import Workload

NODE_FILE = "openb_node_list_all_node.csv"
GPU_NODE_FILE = "openb_node_list_gpu_node.csv"  # the 1,213 GPU nodes the FGD paper simulates
POD_FILE = "openb_pod_list_default.csv"
RESOURCES = ("cpu_milli", "memory_mib", "gpu_milli")
MILLI = 1000


@dataclass(frozen=True)
class AlibabaNodes:
    names: np.ndarray  # object (H,)
    cpu_milli: np.ndarray  # int64 (H,)
    memory_mib: np.ndarray  # int64 (H,)
    gpus: np.ndarray  # int64 (H,)
    model: np.ndarray  # object (H,), '' for CPU-only nodes

    def __len__(self) -> int:
        return int(self.names.size)


@dataclass(frozen=True)
class AlibabaPods:
    names: np.ndarray  # object (n,)
    cpu_milli: np.ndarray  # int64
    memory_mib: np.ndarray  # int64
    num_gpu: np.ndarray  # int64
    gpu_milli: np.ndarray  # int64, per GPU
    gpu_spec: np.ndarray  # object: required GPU model(s), '' = any
    qos: np.ndarray  # object
    phase: np.ndarray  # object
    creation: np.ndarray  # float64 s
    deletion: np.ndarray  # float64 s (inf when blank)
    scheduled: np.ndarray  # float64 s (nan when blank: never scheduled)

    def __len__(self) -> int:
        return int(self.names.size)

    def to_workload(self, name: str = "alibaba-gpu-2023") -> Workload:
        """Arrival = creation, departure = deletion, demand = (cpu, memory, total GPU milli)."""
        order = np.argsort(self.creation, kind="stable")
        gpu_total = (self.num_gpu * self.gpu_milli).astype(np.float64)
        demand = np.stack([self.cpu_milli, self.memory_mib, gpu_total], 1).astype(np.float64)
        return Workload(
            name=name,
            resources=RESOURCES,
            arrival=self.creation[order],
            departure=self.deletion[order],
            demand=demand[order],
            gpu_count=self.num_gpu[order],
            gpu_milli=self.gpu_milli[order],
            rank=qos_rank(self.qos)[order],
        )


QOS_CLASS = {"Guaranteed": "high", "LS": "normal", "Burstable": "low", "BE": "spot"}


def qos_rank(qos: np.ndarray) -> np.ndarray:
    """A pod's QoS as a priority class rank (policies/preemption.py): Guaranteed high,
    latency-sensitive (LS) normal, Burstable low, best-effort (BE) spot; blank or other: normal."""
    ranks = {q: class_rank(c) for q, c in QOS_CLASS.items()}
    normal = class_rank(DEFAULT_CLASS)
    return np.array([ranks.get(str(q).strip(), normal) for q in qos], dtype=np.int64)


def read_nodes(path: str | Path) -> AlibabaNodes:
    c = read_columns(path, required=("sn", "cpu_milli", "memory_mib", "gpu", "model"))
    nodes = AlibabaNodes(
        names=c.text("sn"),
        cpu_milli=c.number("cpu_milli", np.int64, minimum=0),
        memory_mib=c.number("memory_mib", np.int64, minimum=0),
        gpus=c.number("gpu", np.int64, minimum=0, maximum=64),
        model=np.array([m.strip() for m in c.cols["model"]], dtype=object),
    )
    if len(nodes) == 0:
        raise InvalidInputError(f"{c.path}: no nodes")
    names = nodes.names
    if len(set(names.tolist())) != names.size:
        _, first = np.unique(names, return_index=True)
        dup = np.setdiff1d(np.arange(names.size), first)[0]
        raise InvalidInputError(f"{c.where(int(dup))}: duplicate node name {names[dup]!r}")
    return nodes


def read_pods(path: str | Path) -> AlibabaPods:
    cols = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time", "deletion_time")
    c = read_columns(path, required=cols)
    n = len(c)
    opt = {k: c.text(k) if k in c.cols else np.full(n, "", dtype=object)
           for k in ("gpu_spec", "qos", "pod_phase", "scheduled_time")}
    num_gpu = c.number("num_gpu", np.int64, minimum=0, maximum=64)
    gpu_milli = c.number("gpu_milli", np.int64, minimum=0, maximum=MILLI)
    bad = np.flatnonzero((num_gpu > 0) != (gpu_milli > 0))
    if bad.size:
        i = int(bad[0])
        raise c.error(i, f"num_gpu={num_gpu[i]} and gpu_milli={gpu_milli[i]} disagree (both 0 or both > 0)")
    creation = c.number("creation_time", minimum=0)
    deletion = c.number("deletion_time", empty=np.inf)
    late = np.flatnonzero(deletion < creation)
    if late.size:
        i = int(late[0])
        raise c.error(i, f"deletion_time {deletion[i]:g} precedes creation_time {creation[i]:g}")
    sched = np.full(n, np.nan)
    if "scheduled_time" in c.cols:
        has = np.array([bool(s.strip()) for s in opt["scheduled_time"]], dtype=bool)
        sched[has] = c.number("scheduled_time", empty=0.0)[has]
    return AlibabaPods(
        names=c.text("name"),
        cpu_milli=c.number("cpu_milli", np.int64, minimum=0),
        memory_mib=c.number("memory_mib", np.int64, minimum=0),
        num_gpu=num_gpu,
        gpu_milli=gpu_milli,
        gpu_spec=np.array([s.strip() for s in opt["gpu_spec"]], dtype=object),
        qos=opt["qos"],
        phase=opt["pod_phase"],
        creation=creation,
        deletion=deletion,
        scheduled=sched,
    )


@dataclass(frozen=True)
class AlibabaTrace:
    nodes: AlibabaNodes
    pods: AlibabaPods


def load_alibaba(directory: str | Path, node_file: str = NODE_FILE, pod_file: str = POD_FILE) -> AlibabaTrace:
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"Alibaba trace directory not found: {d}")
    return AlibabaTrace(read_nodes(d / node_file), read_pods(d / pod_file))
