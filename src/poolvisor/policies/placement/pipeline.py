"""The placement pipeline: filters -> normalized weighted scorers -> argmax, with an explanation.

Scores are normalized per scorer to [0, 1] over the candidates (min-max, Nova's weigher
normalization), multiplied by the scorer's weight and summed. Ties go to the lowest host index,
so a decision is deterministic for a given state.

The default scorers are best fit, soft affinity and keep-scarce-free (scarce.py) at weight 10, so
hosts with free GPUs (or other scarce resources) a request does not use come last. A scorer with a
`scarce` attribute receives the policy's scarce resource names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import NoValidHostError
from poolvisor.policies.placement.explain import Candidate, Decision, Explanation, FilterReport
from poolvisor.policies.placement.filters import Filter
from poolvisor.policies.placement.registry import make_filter, make_scorer
from poolvisor.policies.placement.request import Request
from poolvisor.policies.placement.scarce import DEFAULT_SCARCE, DEFAULT_WEIGHT, check_scarce
from poolvisor.policies.placement.scorers import Scorer
from poolvisor.state.cluster import ClusterState

DEFAULT_FILTERS = ("host-state", "pool", "capacity", "labels", "affinity", "domain-spread", "max-workloads")
DEFAULT_SCORERS = (("best-fit", 1.0), ("soft-affinity", 1.0), ("keep-scarce-free", DEFAULT_WEIGHT))


@dataclass
class PlacementPolicy:
    """Names filters and weighted scorers from the registries; build once, reuse for many requests."""

    filters: Sequence[str] = DEFAULT_FILTERS
    scorers: Sequence[tuple[str, float]] = DEFAULT_SCORERS
    top_k: int = 3
    scarce: Sequence[str] = DEFAULT_SCARCE  # resources kept for the requests that ask for them
    _filters: list[Filter] = field(init=False, repr=False)
    _scorers: list[tuple[Scorer, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scarce = check_scarce(self.scarce)
        self._filters = [make_filter(n) for n in self.filters]
        self._scorers = [(self._configured(make_scorer(n)), float(w)) for n, w in self.scorers]

    @property
    def protected_scarce(self) -> tuple[str, ...]:
        """The scarce resources placement keeps free: `scarce` when keep-scarce-free has a positive
        weight (batch placement and reports follow it), else none."""
        on = any(s.name == "keep-scarce-free" and w > 0 for s, w in self._scorers)
        return tuple(self.scarce) if on else ()

    def _configured(self, scorer: Scorer) -> Scorer:
        if hasattr(scorer, "scarce"):
            setattr(scorer, "scarce", self.scarce)  # noqa: B010 - not every Scorer has it
        return scorer

    @classmethod
    def named(cls, name: str, scarce: Sequence[str] = DEFAULT_SCARCE) -> PlacementPolicy:
        """Built-in policies: best-fit (pack), spread (worst fit), balanced, dot-product; each with
        soft affinity and keep-scarce-free (as the default). fgd-ri: pools with shared GPUs, the
        per-device filter and the fgd-ri scorer alone (gpushare.py; its decisions are the simulator's)."""
        if name == "fgd-ri":
            return cls(filters=(*DEFAULT_FILTERS, "gpu-devices"), scorers=(("fgd-ri", 1.0),), scarce=scarce)
        scorer = {
            "best-fit": "best-fit",
            "pack": "best-fit",
            "spread": "worst-fit",
            "worst-fit": "worst-fit",
            "balanced": "balanced",
            "dot-product": "dot-product",
        }.get(name)
        if scorer is None:
            from poolvisor.domain.errors import InvalidInputError

            raise InvalidInputError(
                f"unknown placement policy {name!r}; known: best-fit, spread, balanced, dot-product, fgd-ri"
            )
        return cls(scorers=((scorer, 1.0), *DEFAULT_SCORERS[1:]), scarce=scarce)


def normalize(x: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant vector maps to zeros (it cannot discriminate)."""
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(x, dtype=np.float64)
    return (x - lo) / (hi - lo)


def policy_rule(policy: PlacementPolicy) -> str:
    """How the best candidate is chosen, as every explanation words it."""
    return "highest weighted score: " + " + ".join(f"{w:g}*{s.name}" for s, w in policy._scorers)


def top_order(cand: np.ndarray, total: np.ndarray, k: int) -> np.ndarray:
    """np.lexsort((cand, -total))[:k] (score descending, then host index) without sorting everything:
    only the scores >= the k-th largest (ties included) are sorted."""
    n = total.size
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if 4 * k >= n or np.isnan(total).any():
        return np.lexsort((cand, -total))[:k]
    kth = np.partition(total, n - k)[n - k]
    sel = np.flatnonzero(total >= kth)
    return sel[np.lexsort((cand[sel], -total[sel]))][:k]


def run_filters(
    view: ClusterState, req: Request, policy: PlacementPolicy
) -> tuple[np.ndarray, list[FilterReport]]:
    alive = np.ones(view.n, dtype=bool)
    reports = []
    for flt in policy._filters:
        v = flt(view, req)
        newly = alive & ~v.mask
        rejected = int(newly.sum())
        reasons = {}
        if rejected:
            for reason, m in v.reason_masks.items():
                c = int(np.count_nonzero(m & newly))
                if c:
                    reasons[reason] = c
        alive &= v.mask
        reports.append(FilterReport(flt.name, rejected, reasons, int(alive.sum())))
    return alive, reports


def place(view: ClusterState, req: Request, policy: PlacementPolicy | None = None) -> Decision:
    """Choose a host for one request without mutating the state. host is None when nothing fits."""
    policy = policy or PlacementPolicy()
    alive, reports = run_filters(view, req, policy)
    cand = np.flatnonzero(alive)
    if cand.size == 0:
        expl = Explanation(view.n, reports, 0, [], rule="no valid host")
        return Decision(req.name, None, None, expl)
    total = np.zeros(cand.size)
    per: list[tuple[str, np.ndarray]] = []
    for scorer, weight in policy._scorers:
        sc = normalize(np.asarray(scorer(view, req, cand), dtype=np.float64))
        per.append((scorer.name, sc))
        total += weight * sc
    order = top_order(cand, total, min(policy.top_k, cand.size))  # by score desc, then host index asc
    top = [Candidate(view.names[cand[i]], float(total[i]), {n: float(sc[i]) for n, sc in per}) for i in order]
    best = int(cand[order[0]])
    return Decision(req.name, view.names[best], best, Explanation(view.n, reports, int(cand.size), top,
                                                                   policy_rule(policy)))


def require_host(decision: Decision) -> int:
    """The chosen host index, or NoValidHostError whose message names the filters that rejected hosts."""
    if decision.host_index is None:
        raise NoValidHostError(
            f"no valid host for {decision.request}: {decision.explanation.summary()}",
            detail=decision.explanation.to_dict(),
        )
    return decision.host_index


def place_batch(
    state: ClusterState,
    reqs: Sequence[Request],
    policy: PlacementPolicy | None = None,
    *,
    all_or_nothing: bool = False,
) -> list[Decision]:
    """Place requests in order, allocating each on `state`. With all_or_nothing, one failure undoes all
    allocations made here and raises NoValidHostError; otherwise failed requests get host None."""
    policy = policy or PlacementPolicy()
    done: list[tuple[int, Request]] = []
    out = []
    for req in reqs:
        d = place(state, req, policy)
        if d.host_index is None:
            if all_or_nothing:
                for h, r in reversed(done):
                    state.release(h, r.demand, r.group)
                require_host(d)
            out.append(d)
            continue
        state.allocate(d.host_index, req.demand, req.group)
        done.append((d.host_index, req))
        out.append(d)
    return out
