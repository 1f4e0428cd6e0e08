"""Fragmentation of a host as seen by the workload (Weng et al., ATC'23, "Beware of Fragmentation").

For a task type t and a host n, the fragment F_n(t) is the part of the host's free *primary*
capacity (GPU milli on a GPU cluster) that t cannot use:

* t needs no primary resource, or t does not fit on n at all (too little CPU, or fewer than
  ``count`` devices with ``milli`` free): every free unit is a fragment;
* t fits: the free capacity of the devices that each hold less than t's per-device demand.

The host's fragmentation is the expectation over the workload's task-type distribution,
F_n = sum_t p_t F_n(t), and the cluster's is the sum over hosts. Fragmentation gradient descent
places a task where F_n grows least. A host without devices (VM hosts) is modelled as a single
device holding its whole primary resource (vCPU), so the same measure gives "expected stranded vCPU".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from poolvisor.sim.online.fleet import Fleet, Job


@dataclass(frozen=True)
class TaskTypes:
    """Distinct task demands and their frequency: gate (T, K) scalar demands checked for fit,
    count (T,) devices, milli (T,) float per device (0 = needs no primary resource), p (T,) sums to 1."""

    gate: np.ndarray
    count: np.ndarray
    milli: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return int(self.p.size)

    @classmethod
    def from_demands(
        cls, gate: np.ndarray, count: np.ndarray, milli: np.ndarray, coverage: float = 0.99
    ) -> TaskTypes:
        """The most frequent distinct demands covering ``coverage`` of the tasks that need the
        primary resource, renormalized (the "typical pods" of the FGD paper; tasks without a GPU
        are left out, as in its experiments, so an empty cluster has no fragmentation)."""
        gate = np.asarray(gate, dtype=np.float64).reshape(len(count), -1)
        needs = (np.asarray(count) > 0) & (np.asarray(milli) > 0)
        if not needs.any():
            return cls(np.zeros((0, gate.shape[1])), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
        rows = np.column_stack([gate, count, milli])[needs]
        uniq, freq = np.unique(rows, axis=0, return_counts=True)
        order = np.lexsort((np.arange(freq.size), -freq))
        uniq, freq = uniq[order], freq[order]
        cum = np.cumsum(freq) / freq.sum()
        keep = int(np.searchsorted(cum, coverage - 1e-12) + 1)
        uniq, freq = uniq[:keep], freq[:keep]
        k = gate.shape[1]
        return cls(
            gate=uniq[:, :k],
            count=uniq[:, k].astype(np.int64),
            milli=uniq[:, k + 1],
            p=freq / freq.sum(),
        )


def host_fragmentation(gate_free: np.ndarray, dev_free: np.ndarray, types: TaskTypes) -> np.ndarray:
    """F_n for N host states: gate_free (N, K) free gating resources, dev_free (N, G) per device."""
    n = dev_free.shape[0]
    total = dev_free.sum(axis=1, dtype=np.float64)
    if n == 0 or len(types) == 0:
        return np.zeros(n)
    ok = np.ones((n, len(types)), dtype=bool)
    for k in range(types.gate.shape[1]):
        ok &= gate_free[:, k, None] + 1e-9 >= types.gate[None, :, k]
    ge = dev_free[:, :, None] >= types.milli[None, None, :]  # (N, G, T)
    ok &= ge.sum(axis=1) >= types.count[None, :]
    ok &= types.milli[None, :] > 0
    small = np.einsum("ng,ngt->nt", dev_free.astype(np.float64), ~ge)
    frag = np.where(ok, small, total[:, None])
    return frag @ types.p


_HASH_W = np.random.default_rng(12345).uniform(1.0, 2.0, size=256)


def unique_states(gate_free: np.ndarray, dev_free: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deduplicate host states (many hosts are identical, e.g. empty ones): (gate, dev, inverse).

    Rows are grouped by a random projection (one 1-D unique instead of a row-wise sort), then
    checked exactly against their group's representative; a collision falls back to np.unique.
    """
    rows = np.column_stack([gate_free, dev_free.astype(np.float64)])
    if rows.shape[1] <= _HASH_W.size:
        key = rows @ _HASH_W[: rows.shape[1]]
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        uniq = rows[first]
        if not np.array_equal(uniq[inv], rows):
            uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    else:
        uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    k = gate_free.shape[1]
    return uniq[:, :k], uniq[:, k:].astype(dev_free.dtype), inv.reshape(-1)


def fragmentation_dedup(gate_free: np.ndarray, dev_free: np.ndarray, types: TaskTypes) -> np.ndarray:
    """host_fragmentation, evaluated once per distinct state when that saves work."""
    if dev_free.shape[0] > 64:
        g, d, inv = unique_states(gate_free, dev_free)
        if g.shape[0] * 2 < gate_free.shape[0]:
            return host_fragmentation(g, d, types)[inv]
    return host_fragmentation(gate_free, dev_free, types)


@dataclass(frozen=True)
class FragModel:
    """How a fleet maps onto the measure: which scalar rows gate a fit, and what the primary is.

    ``primary_row`` None means the primary resource is the fleet's devices (GPUs); otherwise it is
    that scalar row, treated as one device per host.
    """

    types: TaskTypes
    gate_rows: tuple[int, ...]
    primary_row: int | None = None

    def job_primary(self, job: Job) -> tuple[int, float]:
        if self.primary_row is None:
            return job.count, float(job.milli)
        d = float(job.demand[self.primary_row])
        return (1, d) if d > 0 else (0, 0.0)

    def states(self, fleet: Fleet, hosts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        free = fleet.state.capacity[:, hosts] - fleet.state.allocated[:, hosts]
        gate = free[list(self.gate_rows)].T if self.gate_rows else np.zeros((hosts.size, 0))
        if self.primary_row is None:
            return gate, fleet.dev_free[hosts]
        return gate, free[self.primary_row][:, None]

    def capacity(self, fleet: Fleet) -> float:
        """Total primary capacity of the hosts that are up (the denominator of fragmentation %)."""
        if self.primary_row is None:
            return float(fleet.dev_cap[fleet.up].sum())
        return float(fleet.state.capacity[self.primary_row, fleet.up].sum())

    def host_frag(self, fleet: Fleet, hosts: np.ndarray) -> np.ndarray:
        gate, dev = self.states(fleet, hosts)
        return fragmentation_dedup(gate, dev, self.types)

    def after(self, job: Job, gate: np.ndarray, dev: np.ndarray) -> np.ndarray:
        """F_n after placing the job on each given host state (devices chosen best fit, as the
        fleet does); ``gate``/``dev`` come from ``states``."""
        gate = gate - (job.demand[list(self.gate_rows)][None, :] if self.gate_rows else 0.0)
        count, milli = self.job_primary(job)
        if count > 0:
            dev = dev.astype(np.float64)
            key = np.where(dev >= milli, dev, np.inf)
            chosen = np.argsort(key, axis=1, kind="stable")[:, :count]
            np.subtract.at(dev, (np.arange(dev.shape[0])[:, None], chosen), milli)
        return host_fragmentation(gate, dev, self.types)

    def after_pairs(
        self, job: Job, gate: np.ndarray, dev: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a job on ONE device: every (state, device) pair with room and F_n after using it."""
        gate = gate - (job.demand[list(self.gate_rows)][None, :] if self.gate_rows else 0.0)
        _, milli = self.job_primary(job)
        si, di = np.nonzero(dev >= milli)
        new = dev[si].astype(np.float64)
        new[np.arange(si.size), di] -= milli
        return si, di, host_fragmentation(gate[si], new, self.types)
