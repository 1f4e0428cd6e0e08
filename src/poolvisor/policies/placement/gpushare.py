"""Shared GPUs in the live placement pipeline: per-GPU state next to a ClusterState, a device-fit
filter (``gpu-devices``) and the ``fgd-ri`` scorer, computed by the same core as the simulator
(``gpufrag.score_details``).

A pool's hosts carry a ``gpu`` resource (number of GPUs). A request's ``gpu`` demand below 1 is a
fraction of ONE GPU (0.3 = 300 milli on one device); 1, 2, ... are whole GPUs. The scalar ``gpu``
capacity filter cannot see that 0.3 + 0.3 free on two GPUs does not hold 0.5, so the per-GPU free
milli (``GpuDevices``) is kept next to the ClusterState: ``attach`` it once, call its ``allocate`` /
``release`` with each placement, and the filter and scorer read it. Without an attached state both
fall back to a packed view derived from the scalar allocation (whole GPUs used first, the fraction
on the next GPU), which is exact while every fraction of a host shares one GPU.

The scorer's target workload (the FGD measure's task types) is the typical mix of the requests the
state has allocated (95 % of them, as the paper), or one given with ``GpuDevices.workload``. Its fill
order interleaves host shapes (hosts with the same capacity vector) with a stable order from the
host names, so a decision is deterministic for a given state.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.policies.placement import gpufrag as gf
from poolvisor.policies.placement.filters import Verdict
from poolvisor.policies.placement.request import Request
from poolvisor.state.cluster import ClusterState

GPU = "gpu"
CPU = "vcpu"
POLICY = "fgd-ri"
HISTORY = 10_000  # requests remembered for the learned target workload


def request_pod(view: ClusterState, demand: np.ndarray, cpu: str = CPU, gpu: str = GPU) -> gf.Pod:
    """The pod a demand vector asks for: a fraction (< 1) of one GPU, or whole GPUs."""
    res = view.resources
    g = float(demand[res.index(gpu)]) if gpu in res else 0.0
    c = float(demand[res.index(cpu)]) if cpu in res else 0.0
    return pod_of(c, g)


def pod_of(c: float, g: float) -> gf.Pod:
    """The pod of ``c`` CPU and ``g`` GPU: a fraction (< 1) of one GPU, or whole GPUs (else a 4xx)."""
    if g <= 0:
        return gf.Pod(c, 0, 0)
    if g < 1:
        milli = int(round(g * gf.MILLI))
        return gf.Pod(c, 1, max(milli, 1))
    if abs(g - round(g)) > 1e-9:
        raise InvalidInputError(f"GPU demand {g:g}: ask for a fraction of one GPU (< 1) or whole GPUs")
    return gf.Pod(c, int(round(g)), gf.MILLI)


class GpuDevices:
    """Free milli per host and GPU (H, G) for one ClusterState, plus what the scorer learns."""

    def __init__(self, free: np.ndarray, *, workload: gf.TargetWorkload | None = None,
                 fill: np.ndarray | None = None, cpu: str = CPU, gpu: str = GPU) -> None:
        self.free = np.asarray(free, dtype=np.int64).copy()
        if self.free.ndim != 2 or np.any(self.free < 0) or np.any(self.free > gf.MILLI):
            raise InvalidInputError("per-GPU free milli must be an (hosts, GPUs) array in 0..1000")
        self.fixed_workload = workload
        self.fixed_fill = None if fill is None else np.asarray(fill, dtype=np.float64)
        self.cpu, self.gpu = cpu, gpu
        self.history: deque[tuple[float, int, int]] = deque(maxlen=HISTORY)
        self.allocations = 0  # requests allocated so far (the history keeps the last HISTORY)
        self._learned: tuple[int, gf.TargetWorkload] | None = None
        self._within: list[int] = []  # stable hash of each host name, by state index
        self._fill: tuple[bytes, np.ndarray] | None = None  # (capacity digest, fill positions)

    @classmethod
    def packed(cls, view: ClusterState, gpu: str = GPU, cpu: str = CPU) -> GpuDevices:
        """Per-GPU state implied by the scalar allocation: whole GPUs first, the fraction next."""
        row = view.resources.index(gpu)
        count = np.floor(view.capacity[row] + 1e-9).astype(np.int64)
        g = max(int(count.max()) if count.size else 0, 1)
        used = np.round(view.allocated[row] * gf.MILLI).astype(np.int64)
        idx = np.arange(g)[None, :] * gf.MILLI
        taken = np.clip(used[:, None] - idx, 0, gf.MILLI)
        free = np.where(np.arange(g)[None, :] < count[:, None], gf.MILLI - taken, 0)
        return cls(free, cpu=cpu, gpu=gpu)

    # ---- what the scorer reads ----------------------------------------------------------------------
    def workload(self, extra: gf.Pod | None = None) -> gf.TargetWorkload:
        """The target workload: the one given, else the typical mix of the requests allocated so far
        (with ``extra`` when there are none yet)."""
        if self.fixed_workload is not None:
            return self.fixed_workload
        hist = list(self.history) or ([(extra.cpu, extra.count, extra.milli)] if extra else [])
        if not hist:
            return gf.TargetWorkload.of(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
        if self._learned is not None and self._learned[0] == self.allocations and self.history:
            return self._learned[1]
        a = np.array(hist, dtype=np.float64)
        wl = gf.TargetWorkload.typical(a[:, 0], a[:, 1].astype(np.int64), a[:, 2].astype(np.int64))
        if self.history:
            self._learned = (self.allocations, wl)
        return wl

    def stats(self, view: ClusterState, wl: gf.TargetWorkload) -> gf.HostStats:
        self._check(view)
        res = view.resources
        cpu = view.free[res.index(self.cpu)] if self.cpu in res else np.zeros(view.n)
        return gf.HostStats.build(cpu, self.free, wl)

    def fill(self, view: ClusterState) -> np.ndarray:
        """Fill order positions: the given ones, else host shapes interleaved, each shape's hosts in
        the order of a stable hash of their names, with a phase from a hash of the shape."""
        if self.fixed_fill is not None:
            if self.fixed_fill.shape != (view.n,):
                raise InvalidInputError(f"fill order has {self.fixed_fill.size} positions for {view.n} hosts")
            return self.fixed_fill
        names = view.names
        if len(self._within) < view.n:  # hosts are only appended to a state: hash the new names
            self._within += [_stable_hash(n) for n in names[len(self._within): view.n]]
        key = hashlib.blake2b(np.ascontiguousarray(view.capacity).tobytes(), digest_size=16).digest()
        if self._fill is None or self._fill[0] != key or self._fill[1].size != view.n:
            caps, shape = np.unique(view.capacity.T, axis=0, return_inverse=True)
            within = np.array(self._within[: view.n], dtype=np.uint64)
            phase = np.array([_stable_hash(c.tobytes()) / 2.0**64 for c in caps])
            self._fill = (key, gf.fill_positions(shape.reshape(-1), within, phase))
        return self._fill[1]

    # ---- bookkeeping ------------------------------------------------------------------------------------
    def fits(self, pod: gf.Pod) -> np.ndarray:
        if pod.count == 0:
            return np.ones(self.free.shape[0], dtype=bool)
        return np.count_nonzero(self.free >= pod.milli, axis=1) >= pod.count

    def allocate(self, h: int, pod: gf.Pod, gpu: int = -1) -> np.ndarray:
        """Take the pod's GPUs on host h (``gpu`` for a fraction, else the tightest one; whole GPUs:
        the first fully free ones) and remember the request for the target workload."""
        row = self.free[h]
        chosen = choose_devices(row, pod, gpu)
        if chosen is None:
            raise ConflictError(f"host {h} has no {pod.count} GPU(s) with {pod.milli} milli free")
        row[chosen] -= pod.milli
        self.history.append((pod.cpu, pod.count, pod.milli))
        self.allocations += 1
        return chosen

    def release(self, h: int, pod: gf.Pod, gpus: np.ndarray) -> None:
        row = self.free[h]
        if np.any(row[gpus] + pod.milli > gf.MILLI):
            raise ConflictError(f"host {h}: releasing {pod.milli} milli would exceed a GPU")
        row[gpus] += pod.milli

    def _check(self, view: ClusterState) -> None:
        if self.free.shape[0] != view.n:
            raise InvalidInputError(f"GPU state has {self.free.shape[0]} hosts, the pool {view.n}")


    def remember(self, pod: gf.Pod) -> None:
        """Count a request allocated elsewhere (the store's ledger) into the learned workload."""
        self.history.append((pod.cpu, pod.count, pod.milli))
        self.allocations += 1


def choose_devices(row: np.ndarray, pod: gf.Pod, gpu: int = -1) -> np.ndarray | None:
    """The GPUs of one host (free milli per GPU in ``row``) a pod takes, or None when it does not fit:
    a fraction takes ``gpu`` if given, else the tightest GPU with room (first of equals); whole GPUs
    take the first fully free ones. The one rule for the live books, the store's ledger and tests."""
    row = np.asarray(row, dtype=np.int64)
    if pod.count == 0:
        return np.zeros(0, dtype=np.int64)
    if row.size < pod.count:
        return None
    if pod.shares_gpu:
        if gpu < 0:
            gpu = int(np.argmin(np.where(row >= pod.milli, row, np.iinfo(np.int64).max)))
        chosen = np.array([gpu], dtype=np.int64)
    else:
        chosen = gf.take_devices(row[None, :], pod)[0][0]
    if chosen.size != pod.count or np.any(chosen >= row.size) or np.any(row[chosen] < pod.milli):
        return None
    return chosen


_ATTACHED: weakref.WeakKeyDictionary[ClusterState, GpuDevices] = weakref.WeakKeyDictionary()


def attach(view: ClusterState, devices: GpuDevices) -> GpuDevices:
    """Keep ``devices`` as the per-GPU state of ``view`` (read by the filter and the scorer)."""
    devices._check(view)
    _ATTACHED[view] = devices
    return devices


def devices_of(view: ClusterState) -> GpuDevices:
    """The attached per-GPU state, else the packed view derived from the scalar allocation."""
    dev = _ATTACHED.get(view)
    if dev is not None and dev.free.shape[0] == view.n:
        return dev
    if GPU not in view.resources:
        return GpuDevices(np.zeros((view.n, 1), dtype=np.int64))
    return GpuDevices.packed(view)


def _stable_hash(x: str | bytes) -> int:
    data = x.encode() if isinstance(x, str) else x
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


# ---- pipeline plug-ins ------------------------------------------------------------------------------------
class GpuDeviceFilter:
    """The request's GPUs fit on single devices: a fraction on one GPU, whole GPUs fully free."""

    name = "gpu-devices"

    def __call__(self, view: ClusterState, req: Request) -> Verdict:
        dev = devices_of(view)
        pod = request_pod(view, req.demand, dev.cpu, dev.gpu)
        ok = dev.fits(pod)
        return Verdict(ok, {} if ok.all() else {"no GPU with room for it": ~ok})


class FgdRiScorer:
    """fgd-ri: the FGD paper's score (fragmentation decrease through a sigmoid, whole points), minus
    the residue a fraction leaves on its GPU, ties broken by an interleaved fill order of host shapes
    (see gpufrag). Hosts where the request does not fit on single GPUs get the lowest score."""

    name = POLICY

    def __call__(self, view: ClusterState, req: Request, candidates: np.ndarray) -> np.ndarray:
        return self.details(view, req, candidates)[0]

    def details(self, view: ClusterState, req: Request, candidates: np.ndarray) -> tuple[np.ndarray, Any]:
        cand = np.asarray(candidates, dtype=np.int64)
        dev = devices_of(view)
        pod = request_pod(view, req.demand, dev.cpu, dev.gpu)
        out = np.zeros(cand.size)
        ok = dev.fits(pod)[cand]
        if not ok.any():
            return out, None
        wl = dev.workload(pod)
        d = gf.score_details(POLICY, dev.stats(view, wl), dev.free, cand[ok], pod, wl, dev.fill(view))
        out[ok] = d.key
        out[~ok] = float(d.key.min()) - 1.0
        return out, (cand[ok], d)

    def explain(self, view: ClusterState, req: Request, hosts: Sequence[int]) -> list[dict[str, Any]]:
        """Why each host scores what it does: fragmentation before and after (milli GPU), the FGD
        points, the residue penalty, the fill-order term and the GPU a fraction would take."""
        _, parts = self.details(view, req, np.asarray(hosts, dtype=np.int64))
        if parts is None:
            return []
        cand, d = parts
        return [
            {"host": view.names[int(h)], "score": float(d.key[i]), "fgd_points": float(d.points[i]),
             "residue_penalty": float(d.penalty[i]), "fill_term": float(d.fill[i]),
             "fragmentation_before": float(d.before[i]), "fragmentation_after": float(d.after[i]),
             "gpu": int(d.gpu[i])}
            for i, h in enumerate(cand)
        ]
