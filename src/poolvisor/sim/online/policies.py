"""Online placement policies: given the hosts where a job fits, pick one (and its devices).

First fit, best fit, worst fit and dot-product reuse the placement scorers on the fleet's
ClusterState (the same code the live scheduler weighs hosts with); FGD minimizes the growth of
the workload-weighted fragmentation (see fragmentation.py). Ties go to the lowest host index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.placement.registry import make_scorer
from poolvisor.policies.placement.request import Request
from poolvisor.sim.online.fleet import MILLI, Fleet, Job
from poolvisor.sim.online.fragmentation import FragModel, host_fragmentation, unique_states


@dataclass
class Context:
    """What a policy may look at: the fleet and the workload's fragmentation model."""

    fleet: Fleet
    model: FragModel | None


class OnlinePolicy(Protocol):
    name: str

    def choose(self, ctx: Context, job: Job, cand: np.ndarray) -> tuple[int, np.ndarray | None]:
        """Host index (one of ``cand``) and device indices (None: the fleet picks best fit)."""
        ...


class FirstFit:
    name = "first-fit"

    def choose(self, ctx: Context, job: Job, cand: np.ndarray) -> tuple[int, np.ndarray | None]:
        return int(cand[0]), None


class ScorerPolicy:
    """Highest score of one placement scorer (best-fit, worst-fit, dot-product, balanced)."""

    def __init__(self, name: str, scorer: str) -> None:
        self.name = name
        self._scorer = make_scorer(scorer)

    def choose(self, ctx: Context, job: Job, cand: np.ndarray) -> tuple[int, np.ndarray | None]:
        scores = np.asarray(self._scorer(ctx.fleet.state, Request(self.name, job.demand), cand), dtype=float)
        scores = np.where(np.isnan(scores), -np.inf, scores)
        return int(cand[int(np.argmax(scores))]), None


class FragmentationGradient:
    """FGD: place where the expected fragmentation of the host increases least.

    A job on a fraction of one device is tried on every device with room (host, device pairs);
    other jobs take devices best fit. Needs a FragModel (built from the workload's demands).
    """

    name = "fgd"

    def choose(self, ctx: Context, job: Job, cand: np.ndarray) -> tuple[int, np.ndarray | None]:
        model = ctx.model
        if model is None:
            raise InvalidInputError("fgd needs a fragmentation model (task-type distribution)")
        gate, dev = model.states(ctx.fleet, cand)
        if cand.size > 32:  # identical hosts (e.g. all empty ones of a model) are evaluated once
            gate, dev, inv = unique_states(gate, dev)
        else:
            inv = np.arange(cand.size)
        before = host_fragmentation(gate, dev, model.types)
        count, milli = model.job_primary(job)
        if model.primary_row is None and count == 1 and 0 < milli < MILLI:
            si, di, after = model.after_pairs(job, gate, dev)
            delta = after - before[si]
            best = np.full(gate.shape[0], np.inf)
            np.minimum.at(best, si, delta)
            host = int(np.argmin(best[inv]))  # lowest host index among the best states
            s = int(inv[host])
            pairs = np.flatnonzero((si == s) & (delta == best[s]))
            return int(cand[host]), np.array([di[pairs[0]]])
        delta = model.after(job, gate, dev) - before
        return int(cand[int(np.argmin(delta[inv]))]), None


POLICIES = ("first-fit", "best-fit", "worst-fit", "dot-product", "fgd")


def make_policy(name: str) -> OnlinePolicy:
    if name == "first-fit":
        return FirstFit()
    if name in ("best-fit", "worst-fit", "dot-product"):
        return ScorerPolicy(name, name)
    if name == "spread":
        return ScorerPolicy("worst-fit", "worst-fit")
    if name == "fgd":
        return FragmentationGradient()
    raise InvalidInputError(f"unknown online policy {name!r}; known: {', '.join(POLICIES)}, all")


def policy_names(spec: str) -> list[str]:
    """'all' or a comma-separated list, validated."""
    names = list(POLICIES) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise InvalidInputError("no policy given")
    for n in names:
        make_policy(n)
    return names
