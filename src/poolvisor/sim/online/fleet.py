"""A fixed fleet for online replay: scalar resources in a ClusterState plus per-device free arrays.

Scalar resources (CPU, memory, total GPU milli, ...) live in the shared ClusterState and every
running job is a row of its workload table (key: the job's index), so the placement scorers,
the capacity-checked allocate/release and the one host/workload model are reused. Accelerators shared at a
fraction of one device need more: a pod asking for 0.3 GPU must fit on ONE GPU, so every host
also has a row of ``dev_free`` (H, G) in thousandths of a device (0 for devices it does not have).
A job needing ``count`` devices with ``milli`` each fits where at least ``count`` devices have
``milli`` free; all checks are vectorized over hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.domain.models import HostSpec, HostState
from poolvisor.domain.resources import ResourceSet
from poolvisor.state.cluster import ClusterState

MILLI = 1000
EPS = 1e-9


@dataclass(frozen=True)
class Job:
    """One arrival as the policies see it."""

    index: int
    demand: np.ndarray  # (R,)
    count: int  # devices needed (0 = none)
    milli: int  # per device


class Fleet:
    def __init__(
        self,
        names: Sequence[str],
        resources: Sequence[str],
        capacity: np.ndarray,
        devices: np.ndarray | None = None,
        up: np.ndarray | None = None,
        device_resource: str | None = None,
    ) -> None:
        """capacity (H, R); devices (H,) number of whole devices per host (each MILLI).

        ``device_resource`` names the scalar resource that mirrors the devices' total (kept equal to
        ``dev_free`` summed), e.g. ``gpu_milli``.
        """
        cap = np.asarray(capacity, dtype=np.float64)
        h = len(names)
        if cap.shape != (h, len(resources)):
            raise InvalidInputError(f"capacity shape {cap.shape} != ({h}, {len(resources)})")
        self.state = ClusterState(ResourceSet(tuple(resources)), capacity_hint=max(h, 1))
        up_mask = np.ones(h, dtype=bool) if up is None else np.asarray(up, dtype=bool)
        for i, name in enumerate(names):
            st = HostState.UP if up_mask[i] else HostState.DOWN
            self.state.add_host(HostSpec(name, dict(zip(resources, cap[i].tolist(), strict=True)), state=st))
        dev = np.zeros(h, dtype=np.int64) if devices is None else np.asarray(devices, dtype=np.int64)
        g = int(dev.max()) if dev.size and dev.max() > 0 else 0
        self.dev_cap = np.where(np.arange(g)[None, :] < dev[:, None], MILLI, 0).astype(np.int64)
        self.dev_free = self.dev_cap.copy()
        self.dev_row = self.state.resources.index(device_resource) if device_resource else None
        self.up = up_mask.copy()

    # ---- views ---------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.state.n

    @property
    def devices(self) -> int:
        return int(self.dev_cap.shape[1])

    @property
    def names(self) -> list[str]:
        return self.state.names

    def free(self) -> np.ndarray:
        return self.state.capacity - self.state.allocated

    # ---- fit -----------------------------------------------------------------------------------
    def device_fit(self, count: int, milli: int, hosts: np.ndarray | slice = slice(None)) -> np.ndarray:
        """(H,) or (len(hosts),): at least ``count`` devices with ``milli`` free."""
        if count <= 0:
            n = self.n if isinstance(hosts, slice) else len(hosts)
            return np.ones(n, dtype=bool)
        return np.count_nonzero(self.dev_free[hosts] >= milli, axis=1) >= count

    def feasible(self, job: Job) -> np.ndarray:
        """Indices of UP hosts where the job fits (ascending)."""
        st = self.state
        ok = self.up & np.all(st.allocated + job.demand[:, None] <= st.capacity + EPS, axis=0)
        if job.count > 0:
            ok &= self.device_fit(job.count, job.milli)
        return np.flatnonzero(ok)

    def pick_devices(self, h: int, count: int, milli: int) -> np.ndarray:
        """Best fit inside a host: the ``count`` devices with the least free capacity that suffices."""
        row = self.dev_free[h]
        key = np.where(row >= milli, row, np.iinfo(np.int64).max)
        chosen = np.argsort(key, kind="stable")[:count]
        if count and key[chosen[-1]] == np.iinfo(np.int64).max:
            raise ConflictError(f"host {self.names[h]!r} lacks {count} devices with {milli} milli free")
        return chosen

    # ---- mutation ------------------------------------------------------------------------------
    def allocate(self, h: int, job: Job, devs: np.ndarray | None = None) -> np.ndarray:
        """Place the job on host h (capacity-checked); returns the device indices used."""
        if not self.up[h]:
            raise ConflictError(f"host {self.names[h]!r} is not up")
        if job.count > 0:
            devs = self.pick_devices(h, job.count, job.milli) if devs is None else np.asarray(devs)
            if devs.size != job.count or np.any(self.dev_free[h, devs] < job.milli):
                raise ConflictError(
                    f"devices {devs.tolist()} of {self.names[h]!r} cannot take {job.milli} milli"
                )
        else:
            devs = np.zeros(0, dtype=np.int64)
        self.state.workloads.add(job.index, h, job.demand)
        if devs.size:
            self.dev_free[h, devs] -= job.milli
        return devs

    def release(self, h: int, job: Job, devs: np.ndarray) -> None:
        table = self.state.workloads
        if int(table.host[table.row(job.index)]) != h:
            raise ConflictError(f"job {job.index} does not run on {self.names[h]!r}")
        table.remove(job.index)
        if devs.size:
            self.dev_free[h, devs] += job.milli

    def set_up(self, h: int, up: bool) -> None:
        self.up[h] = up
        self.state.set_state(self.names[h], HostState.UP if up else HostState.DOWN)

    # ---- diagnosis -----------------------------------------------------------------------------
    def rejection_reason(self, job: Job) -> str:
        """Why no UP host fits: the first resource no host has enough of, else fragmentation."""
        st = self.state
        up = self.up
        free = (st.capacity - st.allocated)[:, up]
        res = st.resources.names
        for r in range(len(res)):
            if job.demand[r] > 0 and not np.any(free[r] + EPS >= job.demand[r]):
                if self.dev_row == r and job.count > 0:
                    break  # judged below, per device
                return f"insufficient {res[r]}"
        if job.count > 0:
            on_devices = self.device_fit(job.count, job.milli, np.flatnonzero(up))
            if not on_devices.any():
                total = self.dev_free[up].sum(axis=1)
                if np.any(total >= job.count * job.milli):
                    return "device fragmentation"
                return "insufficient devices"
        if not up.any():
            return "no host up"
        return "no single host fits all resources"

    def check_invariants(self) -> None:
        """Raise AssertionError if any host exceeds capacity or device bookkeeping drifted."""
        st = self.state
        if np.any(st.allocated > st.capacity + 1e-6):
            h = int(np.argmax(np.any(st.allocated > st.capacity + 1e-6, axis=0)))
            raise AssertionError(
                f"host {self.names[h]} over capacity: {st.allocated[:, h]} > {st.capacity[:, h]}"
            )
        if np.any(st.allocated < -1e-6):
            raise AssertionError("negative allocation")
        st.workloads.check()  # host totals = the running jobs' demands
        if np.any(self.dev_free < 0) or np.any(self.dev_free > self.dev_cap):
            raise AssertionError("device free capacity out of range")
        if self.dev_row is not None and self.devices:
            used = (self.dev_cap - self.dev_free).sum(axis=1)
            if not np.allclose(used, st.allocated[self.dev_row], atol=1e-6):
                raise AssertionError("device usage disagrees with the scalar device resource")
