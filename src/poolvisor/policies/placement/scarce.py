"""Scarce resources (GPUs, any resource the operator names): keep them for the requests that need them.

Which resources are scarce is a setting of the placement policy (`PlacementPolicy.scarce`,
default `("gpu",)`; `poolvisor serve --scarce-resources gpu,fpga` or POOLVISOR_SCARCE_RESOURCES),
not of a host: a resource is scarce everywhere or nowhere, like Nova's PCI weigher that steers
instances without PCI requests away from hosts with free PCI devices, or a Kubernetes taint on
every GPU node.

`KeepScarceFreeScorer` ("keep-scarce-free") penalises a host that has some free amount of a scarce
resource the request does not ask for: raw score -1, else 0. After the pipeline's min-max
normalization that is 0 or 1, so with a weight above the other scorers' (default 10 against best
fit's 1 and soft affinity's 1) such hosts are chosen only when no other host passes the filters;
among them, and among the others, the remaining scorers decide as before. A host whose scarce
resources are all allocated is not penalised: filling it strands nothing.

`stranded` measures the damage already done: free scarce capacity on hosts that cannot fit even
the smallest request needing it (say 4 free GPUs on a host whose memory is full).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from poolvisor.domain.models import HostState
from poolvisor.domain.resources import ResourceSet
from poolvisor.policies.placement.request import Request
from poolvisor.state.cluster import ClusterState

DEFAULT_SCARCE: tuple[str, ...] = ("gpu",)
DEFAULT_WEIGHT = 10.0
FREE_EPS = 1e-9  # a scarce resource counts as free above this (same tolerance as the capacity filter)


def check_scarce(names: Iterable[str]) -> tuple[str, ...]:
    """Validated resource names (lowercase identifiers, no duplicates)."""
    return ResourceSet(tuple(names)).names


def scarce_rows(resources: ResourceSet, scarce: Sequence[str]) -> np.ndarray:
    """Row indices of the scarce resources this state has (names it lacks are ignored)."""
    return np.array([resources.index(r) for r in scarce if r in resources], dtype=np.int64)


def unused_scarce(resources: ResourceSet, scarce: Sequence[str], demand: np.ndarray) -> np.ndarray:
    """Rows of the scarce resources a demand does not ask for (the ones it must not take away)."""
    rows = scarce_rows(resources, scarce)
    return rows[np.asarray(demand)[rows] <= 0] if rows.size else rows


class KeepScarceFreeScorer:
    """-1 on hosts with free scarce resources the request does not use, 0 elsewhere (vectorized)."""

    name = "keep-scarce-free"

    def __init__(self, scarce: Iterable[str] = DEFAULT_SCARCE):
        self.scarce: tuple[str, ...] = check_scarce(scarce)

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        rows = unused_scarce(view.resources, self.scarce, req.demand)
        if rows.size == 0 or candidates.size == 0:
            return np.zeros(candidates.size)
        sel = np.ix_(rows, candidates)
        free = view.capacity[sel] - view.allocated[sel]
        return np.where((free > FREE_EPS).any(axis=0), -1.0, 0.0)


def smallest_requests(resources: ResourceSet, scarce: Sequence[str],
                      demands: Iterable[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Per scarce resource, the component-wise smallest known request that needs it.

    Known requests are `demands` (the flavor catalogue). A resource no demand asks for gets one
    unit of it plus the component-wise minimum of all demands (nothing when there are none). A
    component-wise minimum is at most any real request, so capacity it cannot use is certainly
    stranded (the measure errs on the low side)."""
    vecs = [resources.vector({k: v for k, v in d.items() if k in resources}) for d in demands]
    all_min = np.min(vecs, axis=0) if vecs else np.zeros(len(resources))
    out = {}
    for r in scarce:
        if r not in resources:
            continue
        i = resources.index(r)
        needing = [v for v in vecs if v[i] > 0]
        if needing:
            out[r] = np.min(needing, axis=0)
        else:
            probe = all_min.copy()
            probe[i] = 1.0
            out[r] = probe
    return out


def stranded(view: ClusterState, probes: Mapping[str, np.ndarray],
             hosts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per scarce resource, the free amount on each host (of `hosts`, default all) that is stranded:
    the host is up but cannot take `probes[r]` (some resource short, or its workload limit reached).
    A host that is not up strands nothing here: it takes no request at all until it returns."""
    h = np.arange(view.n) if hosts is None else np.asarray(hosts, dtype=np.int64)
    free = view.capacity[:, h] - view.allocated[:, h]
    lim, count = view.max_workloads[h], view.workload_count[h]
    full = (lim > 0) & (count >= lim)
    up = view.state[h] == HostState.UP
    out = {}
    for r, probe in probes.items():  # one pass per scarce resource, vectorized over hosts
        i = view.resources.index(r)
        fits = (free >= probe[:, None] - FREE_EPS).all(axis=0) & ~full
        out[r] = np.where(up & (free[i] > FREE_EPS) & ~fits, free[i], 0.0)
    return out
