"""Queue disciplines: in which order pending creation requests are tried when capacity frees.

Pure functions over columns (numpy in, an order of indices out, no I/O), so the live queue and a
simulator replay the same decisions. Every discipline is deterministic: ties go to the earlier
arrival. A request is described by its arrival (any increasing key), project code, priority class
rank (policies/preemption.py: spot 0 .. system 4), demand vector and declared duration (NaN: not
declared).

- ``fifo``: arrival order.
- ``priority``: strict priority: higher class first, FIFO within a class.
- ``sjf``: shortest declared duration first (undeclared last), FIFO among equals.
- ``round-robin``: between projects: every project's first request, then every project's second...
- ``drf``: strict between classes; within a class, weighted dominant-resource fair share between
  projects (Ghodsi et al.): repeatedly serve the project whose dominant share of the pool (its
  allocation plus what it was served so far, over capacity, per resource; the largest) divided by
  its weight is the lowest, its earliest request first.
- ``ps-n``: the seed's demand-based priority P = S / N: S a project's requested demand (the sum of
  its pending requests' dominant shares of the pool), N its number of running workloads; higher P
  first (a project with no running workload first of all), FIFO within a project.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from poolvisor.domain.errors import InvalidInputError

MAX_WEIGHT = 1e6  # a project's drf weight is in (0, MAX_WEIGHT]: live projects and the simulator's


def check_weight(weight: object, what: str = "weight") -> float:
    """A fair-share weight: a finite number in (0, MAX_WEIGHT] (bool is not a number here). The one
    rule for a live project's weight (services/catalog.py) and a simulator weights file
    (sim/online/weights.py); `what` names the value in the error (a file and line there)."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) \
            or not math.isfinite(weight) or not 0 < float(weight) <= MAX_WEIGHT:
        raise InvalidInputError(f"{what} must be a number in (0, {MAX_WEIGHT:g}], not {weight!r}")
    return float(weight)

DISCIPLINES: tuple[str, ...] = ("fifo", "priority", "sjf", "round-robin", "drf", "ps-n")
DEFAULT_DISCIPLINE = "priority"


@dataclass(frozen=True)
class Pending:
    """Pending requests as columns (n requests, R resources)."""

    arrival: np.ndarray  # (n,) increasing key (e.g. the queue entry's id)
    project: np.ndarray  # (n,) int project code 0..P-1
    rank: np.ndarray  # (n,) priority class rank
    demand: np.ndarray  # (n, R)
    duration: np.ndarray  # (n,) declared seconds, NaN = undeclared

    @property
    def n(self) -> int:
        return int(self.arrival.size)


def check_discipline(name: str) -> str:
    if name not in DISCIPLINES:
        raise InvalidInputError(f"unknown queue discipline {name!r}; allowed: {', '.join(DISCIPLINES)}")
    return name


def order(discipline: str, p: Pending, *, capacity: np.ndarray | None = None,
          usage: np.ndarray | None = None, running: np.ndarray | None = None,
          weights: np.ndarray | None = None) -> np.ndarray:
    """The indices of `p` in the order the discipline serves them.

    capacity (R,): the pool's allocatable capacity (drf, ps-n); usage (P, R): what each project
    holds now (drf); running (P,): each project's running workloads (ps-n); weights (P,): drf
    weights (1 by default)."""
    check_discipline(discipline)
    if p.n == 0:
        return np.zeros(0, dtype=np.int64)
    arrival = np.asarray(p.arrival)
    if discipline == "fifo":
        return np.argsort(arrival, kind="stable")
    if discipline == "priority":
        return np.lexsort((arrival, -np.asarray(p.rank)))
    if discipline == "sjf":
        d = np.asarray(p.duration, dtype=np.float64)
        return np.lexsort((arrival, np.where(np.isnan(d), np.inf, d)))
    if discipline == "round-robin":
        return np.lexsort((arrival, _round(p)))
    projects = int(p.project.max()) + 1
    cap = np.maximum(np.asarray(capacity, dtype=np.float64), 1e-12) if capacity is not None \
        else np.maximum(p.demand.sum(axis=0), 1e-12)
    if discipline == "ps-n":
        share = (p.demand / cap).max(axis=1)
        s = np.bincount(p.project, weights=share, minlength=projects)
        n = np.zeros(projects) if running is None else np.asarray(running, dtype=np.float64)
        with np.errstate(divide="ignore"):
            prio = np.where(n > 0, s / np.where(n > 0, n, 1.0), np.inf)
        return np.lexsort((arrival, -prio[p.project]))
    return _drf(p, cap, usage, weights, projects)


def _round(p: Pending) -> np.ndarray:
    """Each request's position among its project's requests by arrival (0 = its first)."""
    by = np.lexsort((p.arrival, p.project))
    proj = p.project[by]
    starts = np.flatnonzero(np.r_[True, proj[1:] != proj[:-1]])
    pos = np.arange(p.n) - np.repeat(starts, np.diff(np.r_[starts, p.n]))
    out = np.empty(p.n, dtype=np.int64)
    out[by] = pos
    return out


def _drf(p: Pending, cap: np.ndarray, usage: np.ndarray | None, weights: np.ndarray | None,
         projects: int) -> np.ndarray:
    """Strict between classes; within one, weighted DRF between projects, FIFO within a project."""
    used = np.zeros((projects, cap.size)) if usage is None else \
        np.array(usage, dtype=np.float64).reshape(-1, cap.size)[:projects].copy()
    if used.shape[0] < projects:
        used = np.vstack([used, np.zeros((projects - used.shape[0], cap.size))])
    w = np.ones(projects) if weights is None else np.maximum(np.asarray(weights, dtype=np.float64), 1e-12)
    out: list[int] = []
    for rank in sorted(set(np.asarray(p.rank).tolist()), reverse=True):
        idx = np.flatnonzero(p.rank == rank)
        idx = idx[np.lexsort((p.arrival[idx], p.project[idx]))]  # by project, FIFO within
        heads: dict[int, list[int]] = {}
        for i in idx.tolist():
            heads.setdefault(int(p.project[i]), []).append(i)
        nxt = dict.fromkeys(heads, 0)
        while heads:
            live = np.array(sorted(heads))
            dom = (used[live] / cap).max(axis=1) / w[live]
            first = np.array([p.arrival[heads[int(q)][nxt[int(q)]]] for q in live])
            q = int(live[np.lexsort((first, dom))[0]])
            i = heads[q][nxt[q]]
            out.append(i)
            used[q] += p.demand[i]
            nxt[q] += 1
            if nxt[q] == len(heads[q]):
                del heads[q], nxt[q]
    return np.asarray(out, dtype=np.int64)
