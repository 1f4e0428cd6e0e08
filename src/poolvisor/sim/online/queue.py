"""The online simulator's waiting queue: arrivals that do not fit wait instead of being rejected.

Served by the same discipline code as the live queue (policies/queueing.py `order`, one policy
core): whenever a host gains room (a departure, a host coming up), the waiting jobs that could fit
there are tried in the discipline's order over the whole queue, each placed by the replay's
placement policy if it fits, the others keep waiting (as the live drain skips what does not fit).
The discipline sees what the live one sees: arrival order, project, priority class, demand, the
declared duration (here the trace's run time), each project's allocation and running jobs, and
the pool's capacity. A job served late runs for its trace duration from when it starts.
A job larger than every host is rejected at once (it could never start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from poolvisor.policies import queueing
from poolvisor.policies.preemption import PRIORITY_CLASSES
from poolvisor.sim.online.fleet import EPS, Fleet
from poolvisor.traces.workload import Workload


class SimQueue:
    def __init__(self, discipline: str, workload: Workload, fleet: Fleet,
                 weights: np.ndarray | None = None) -> None:
        self.discipline = queueing.check_discipline(discipline)
        self.wl, self.fleet = workload, fleet
        n, P = len(workload), len(workload.project_names)
        run = workload.departure - workload.arrival
        self.duration = np.where(np.isfinite(run), run, np.nan)  # sjf's declared duration
        self.pending: list[int] = []
        self.queued_at = np.full(n, np.nan)
        self.wait = np.full(n, np.nan)  # of the jobs that waited and were served
        self.usage = np.zeros((P, len(workload.resources)))
        self.running = np.zeros(P)
        self.weights = weights
        self.dirty: set[int] = set()

    # ---- bookkeeping the replay reports -------------------------------------------------------
    def started(self, i: int) -> None:
        p = int(self.wl.project[i])
        self.usage[p] += self.wl.demand[i]
        self.running[p] += 1

    def stopped(self, i: int) -> None:
        p = int(self.wl.project[i])
        self.usage[p] -= self.wl.demand[i]
        self.running[p] -= 1

    def never_fits(self, demand: np.ndarray, count: int, milli: int) -> bool:
        """Larger than every host, even empty (waiting would be forever)."""
        st = self.fleet.state
        ok = np.all(demand[:, None] <= st.capacity + EPS, axis=0)
        if count > 0:
            ok &= np.count_nonzero(self.fleet.dev_cap >= milli, axis=1) >= count
        return not bool(ok.any())

    def add(self, i: int, t: float) -> None:
        self.pending.append(i)
        self.queued_at[i] = t

    # ---- serving -----------------------------------------------------------------------------
    def touch(self, host: int) -> None:
        """Host `host` gained room (a departure, or it came up): serve() will look at it."""
        self.dirty.add(host)

    def serve(self, t: float, place: Callable[[int], int]) -> int:
        """Try the waiting jobs that could fit on a host that gained room since the last pass, in
        the discipline's order over the whole queue; `place(i)` places job i by the replay's
        policy (its host) or finds none (-1). A waiting job fits no other host (it was tried when
        each of them last gained room), so only the touched hosts are checked. Returns how many
        started."""
        hosts = np.array(sorted(h for h in self.dirty if self.fleet.up[h]), dtype=np.int64)
        self.dirty.clear()
        if not self.pending or hosts.size == 0:
            return 0
        idx = np.array(self.pending, dtype=np.int64)
        dem = self.wl.demand[idx]
        free = self.fleet.free()[:, hosts]  # (R, D)
        fit = np.stack([np.all(dem <= free[:, d] + EPS, axis=1) for d in range(hosts.size)], axis=1)
        cand = np.flatnonzero(fit.any(axis=1))  # (P, D): fits touched host d now
        if cand.size == 0:
            return 0
        st = self.fleet.state
        up = self.fleet.up
        p = queueing.Pending(idx, self.wl.project[idx], self.wl.rank[idx], dem, self.duration[idx])
        ordered = queueing.order(self.discipline, p, capacity=st.capacity[:, up].sum(axis=1),
                                 usage=self.usage, running=self.running, weights=self.weights)
        col = {int(h): d for d, h in enumerate(hosts.tolist())}
        is_cand = np.zeros(idx.size, dtype=bool)
        is_cand[cand] = True
        served: set[int] = set()
        seq = ordered[is_cand[ordered]]  # the candidates in the discipline's order
        ok: np.ndarray = np.asarray(fit.any(axis=1))
        pos = 0
        while pos < seq.size:
            nxt = np.flatnonzero(ok[seq[pos:]])  # the next one that still fits a touched host
            if nxt.size == 0:
                break
            k = int(seq[pos + int(nxt[0])])
            pos += int(nxt[0]) + 1
            i = int(idx[k])
            h = place(i)
            if h < 0:
                continue
            served.add(i)
            self.wait[i] = t - self.queued_at[i]
            d = col.get(h)
            if d is not None:  # that host has less room now: who still fits it
                fit[cand, d] = np.all(dem[cand] <= self.fleet.free()[:, h] + EPS, axis=1)
                ok[cand] = fit[cand].any(axis=1)
        if served:
            self.pending = [i for i in self.pending if i not in served]
        return len(served)

    # ---- report ------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """Wait times (of every job that waited and was served) and jobs still waiting at the end,
        per priority class and per project (projects: the 20 with the most waiting jobs)."""
        waited = np.isfinite(self.queued_at)
        served = np.isfinite(self.wait)
        left = waited & ~served

        def stats(mask: np.ndarray) -> dict[str, Any]:
            w = self.wait[mask & served]
            return {"waited": int((mask & waited).sum()), "served": int(w.size),
                    "mean_wait": float(w.mean()) if w.size else None,
                    "p95_wait": float(np.percentile(w, 95)) if w.size else None,
                    "max_wait": float(w.max()) if w.size else None,
                    "waiting_at_end": int((mask & left).sum())}

        by_class = {c: stats(self.wl.rank == r) for r, c in enumerate(PRIORITY_CLASSES)
                    if np.any(self.wl.rank == r)}
        counts = np.bincount(self.wl.project[waited], minlength=len(self.wl.project_names))
        top = [int(q) for q in np.argsort(-counts, kind="stable")[:20] if counts[q] > 0]
        by_project = {self.wl.project_names[q]: stats(self.wl.project == q) for q in top}
        return {"discipline": self.discipline, "all": stats(np.ones(len(self.wl), dtype=bool)),
                "by_class": by_class, "by_project": by_project}
