"""Filters: each answers for all hosts at once with a boolean mask and rejection reasons.

A filter returns the mask of hosts it accepts (shape (H,)) and, for the hosts it rejects, a count
per reason. The pipeline only counts rejections among hosts still in the running, Nova-style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from poolvisor.domain.models import GroupPolicy, HostState
from poolvisor.policies.placement.request import Request
from poolvisor.state.cluster import ClusterState


@dataclass(frozen=True)
class Verdict:
    mask: np.ndarray  # bool (H,): True = accepted
    # reason -> bool mask of hosts rejected for it (a host may carry several reasons)
    reason_masks: dict[str, np.ndarray]


class Filter(Protocol):
    name: str

    def __call__(self, view: ClusterState, req: Request) -> Verdict: ...


def _accept_all(view: ClusterState) -> Verdict:
    return Verdict(np.ones(view.n, dtype=bool), {})


class HostStateFilter:
    """Only hosts in state UP accept workloads."""

    name = "host-state"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        st = view.state
        mask = st == HostState.UP
        reasons = {}
        for s in (HostState.MAINTENANCE, HostState.DRAINING, HostState.FENCED, HostState.DOWN,
                  HostState.REMOVED, HostState.STANDBY):
            m = st == s
            if m.any():
                reasons[f"host {s.label}"] = m
        return Verdict(mask, reasons)


class CapacityFilter:
    """Free capacity (after overcommit) covers the demand in every resource."""

    name = "capacity"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        nz = np.flatnonzero(req.demand > 0)
        if nz.size == 0:
            return _accept_all(view)
        short = (view.capacity[nz] - view.allocated[nz]) < req.demand[nz, None] - 1e-9
        reasons = {f"insufficient {view.resources.names[r]}": short[i] for i, r in enumerate(nz)}
        return Verdict(~short.any(axis=0), reasons)


class LabelFilter:
    """Required labels must all match; forbidden labels must all be absent."""

    name = "labels"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        if not req.required_labels and not req.forbidden_labels:
            return _accept_all(view)
        mask = np.ones(view.n, dtype=bool)
        reasons: dict[str, np.ndarray] = {}
        for k, v in req.required_labels.items():
            miss = ~view.labels.mask(k, v, view.n)
            reasons[f"missing label {k}={v}"] = miss
            mask &= ~miss
        for k, v in req.forbidden_labels.items():
            has = view.labels.mask(k, v, view.n)
            reasons[f"forbidden label {k}={v}"] = has
            mask &= ~has
        return Verdict(mask, reasons)


class AffinityFilter:
    """Hard affinity (all members on one host) and anti-affinity (at most one member per host)."""

    name = "affinity"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        if not req.group or req.group_policy not in (GroupPolicy.AFFINITY, GroupPolicy.ANTI_AFFINITY):
            return _accept_all(view)
        members = view.group_mask(req.group)
        if req.group_policy is GroupPolicy.AFFINITY:
            if not members.any():
                return _accept_all(view)  # first member: anywhere
            return Verdict(members, {f"affinity group {req.group} lives elsewhere": ~members})
        return Verdict(~members, {f"anti-affinity group {req.group} already here": members})


class DomainSpreadFilter:
    """Members of a domain-spread group go to distinct failure domains."""

    name = "domain-spread"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        if not req.group or req.group_policy is not GroupPolicy.DOMAIN_SPREAD:
            return _accept_all(view)
        members = view.group_mask(req.group)
        if not members.any():
            return _accept_all(view)
        taken = np.zeros(len(view.domain_names), dtype=bool)
        taken[view.domains[members]] = True
        bad = taken[view.domains]
        return Verdict(~bad, {f"failure domain already holds group {req.group}": bad})


class MaxWorkloadsFilter:
    """Hosts with a max_workloads limit (> 0) that is already reached are rejected."""

    name = "max-workloads"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        lim = view.max_workloads
        full = (lim > 0) & (view.workload_count >= lim)
        return Verdict(~full, {"max workloads reached": full})


class AllowedHostsFilter:
    """Restricts placement to an explicit host set (a pool, or hosts named by the caller)."""

    name = "pool"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        if req.allowed_hosts is None:
            return _accept_all(view)
        mask = np.zeros(view.n, dtype=bool)
        mask[req.allowed_hosts] = True
        return Verdict(mask, {"not in the requested pool": ~mask})
