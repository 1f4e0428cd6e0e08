"""The placement decision the services serve: the index's choice with a summary explanation.

`decide(placer, req)` is what `create_workload` (and its dry run) calls, on the cached state and
with no I/O: the placement index picks the host the pipeline would pick and ranks the top
candidates with the pipeline's per-scorer scores, in O(sqrt H) instead of O(H). Its summary
explanation counts the hosts the host-local filters leave (one figure for all of them, kept by the
index) and what each request-level filter then removes; the exact per-filter rejection counts of
`pipeline.place` are computed when no host fits (the error names the filters) or when asked
(`full=True`). Requests the index cannot serve (see `PlacementIndex._route`) are decided by the
exact pipeline, and the explanation's `path` says so and why.
"""

from __future__ import annotations

from dataclasses import replace

from poolvisor.policies.placement.explain import (
    Decision,
    FilterReport,
    candidate,
    decision,
    explanation,
    filter_report,
)
from poolvisor.policies.placement.index import PlacementIndex, Ranking
from poolvisor.policies.placement.indexed import IndexedPlacer
from poolvisor.policies.placement.pipeline import place
from poolvisor.policies.placement.request import Request

INDEX_PATH = "index"
EXACT_PATH = "exact pipeline"


def decide(placer: IndexedPlacer, req: Request, *, full: bool = False) -> Decision:
    """The host `pipeline.place(placer.state, req, placer.policy)` chooses, explained in summary
    (or in full with `full=True`, and always when no host fits). Mutates nothing but the index."""
    state, policy = placer.state, placer.policy
    ranking = placer.index.rank(req, max(1, policy.top_k))
    if isinstance(ranking, str):  # the index cannot serve this request
        return _exact(place(state, req, policy), f"{EXACT_PATH}: {ranking}")
    path = INDEX_PATH if ranking.path == "tree" else f"{INDEX_PATH} (exact {ranking.path})"
    if full or not ranking.hosts:
        d = place(state, req, policy)
        chosen = ranking.hosts[0] if ranking.hosts else None
        if d.host_index != chosen:  # never seen: the property tests hold the two equal
            return _exact(d, f"{EXACT_PATH}: the index disagreed, the reference decided")
        return _exact(d, path)
    h = ranking.hosts[0]
    names = state.names
    top = [candidate(names[c], total, scores)
           for c, total, scores in zip(ranking.hosts[: policy.top_k], ranking.totals, ranking.scores,
                                       strict=False)]
    expl = explanation(state.n, summary_filters(placer.index, state.n, ranking), ranking.candidates, top,
                       placer.rule, "summary", path)
    return decision(req.name, names[h], h, expl)


def summary_filters(index: PlacementIndex, n: int, ranking: Ranking) -> list[FilterReport]:
    """One report for all host-local filters together (the index keeps only their joint verdict),
    then one per request-level filter of the policy."""
    passed = ranking.passed
    out = [filter_report(index.local_filters, n - passed, {}, passed)] if index.local_filters else []
    remaining = passed
    rejected = ranking.rejected
    for name in index.request_filters:
        reasons = rejected.get(name) if rejected else None
        if reasons is None:
            out.append(filter_report(name, 0, {}, remaining))
            continue
        removed = sum(reasons.values())
        remaining -= removed
        out.append(filter_report(name, removed, dict(reasons), remaining))
    return out


def _exact(d: Decision, path: str) -> Decision:
    return replace(d, explanation=replace(d.explanation, detail="full", path=path))
