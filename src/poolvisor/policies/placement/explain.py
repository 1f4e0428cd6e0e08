"""Explanations: per-filter rejection counts with reasons, top candidates with per-scorer scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)  # slots: built for every served decision, ~40% cheaper
class FilterReport:
    """How many of the hosts still in the running a filter removed, and why (reason -> count)."""

    filter: str
    rejected: int
    reasons: dict[str, int]
    remaining: int

    @property
    def dominant_reason(self) -> str | None:
        return max(self.reasons, key=lambda k: self.reasons[k]) if self.reasons else None


@dataclass(frozen=True, slots=True)
class Candidate:
    host: str
    score: float
    scores: dict[str, float]  # per scorer, normalized to [0, 1] before its weight


@dataclass(frozen=True, slots=True)
class Explanation:
    """`detail` "full": one report per filter with its rejection reasons (`pipeline.place`);
    "summary": the host-local filters in one report, then the request-level ones (the served path,
    see served.py). `path` says what decided: the placement index or the exact pipeline, and why."""

    hosts_considered: int
    filters: list[FilterReport]
    candidates: int
    top: list[Candidate] = field(default_factory=list)
    rule: str = ""
    detail: str = "full"
    path: str = ""

    def summary(self) -> str:
        """One line naming the filters that eliminated hosts (used in 'no valid host' errors)."""
        parts = []
        for f in self.filters:
            if f.rejected:
                reasons = ", ".join(f"{r} {c}" for r, c in sorted(f.reasons.items(), key=lambda x: -x[1]))
                parts.append(f"{f.filter} rejected {f.rejected}" + (f" ({reasons})" if reasons else ""))
        body = "; ".join(parts) if parts else "no filter rejected any host"
        return f"{self.hosts_considered} hosts considered: {body}; {self.candidates} candidates left"

    def to_dict(self) -> dict[str, Any]:
        """dataclasses.asdict's dict (fields in order, containers copied), plus the summary and
        each filter's dominant reason; written out: asdict's generic recursion cost ~30 µs for
        every create, whose claim stores its explanation."""
        return {
            "hosts_considered": self.hosts_considered,
            "filters": [{"filter": f.filter, "rejected": f.rejected, "reasons": dict(f.reasons),
                         "remaining": f.remaining, "dominant_reason": f.dominant_reason}
                        for f in self.filters],
            "candidates": self.candidates,
            "top": [{"host": c.host, "score": c.score, "scores": dict(c.scores)} for c in self.top],
            "rule": self.rule, "detail": self.detail, "path": self.path, "summary": self.summary()}


@dataclass(frozen=True)
class Decision:
    """What every placement returns: the chosen host (or None) and why."""

    request: str
    host: str | None
    host_index: int | None
    explanation: Explanation

    def to_dict(self) -> dict[str, Any]:
        return {"request": self.request, "host": self.host, "explanation": self.explanation.to_dict()}


# Served decisions build several of these per request; a frozen dataclass's __init__ sets each
# field through object.__setattr__, about twice what the slot descriptors below cost. Same class,
# same fields: equal to (and indistinguishable from) instances made by __init__.
_new = object.__new__


def _setters(cls: type, *names: str) -> tuple[Any, ...]:
    return tuple(vars(cls)[n].__set__ for n in names)


_c_host, _c_score, _c_scores = _setters(Candidate, "host", "score", "scores")
_f_filter, _f_rejected, _f_reasons, _f_remaining = _setters(FilterReport, "filter", "rejected", "reasons",
                                                            "remaining")
_e_set = _setters(Explanation, "hosts_considered", "filters", "candidates", "top", "rule", "detail", "path")


def candidate(host: str, score: float, scores: dict[str, float]) -> Candidate:
    """Candidate(host, score, scores), built faster (see above)."""
    c = _new(Candidate)
    _c_host(c, host)
    _c_score(c, score)
    _c_scores(c, scores)
    return c


def filter_report(name: str, rejected: int, reasons: dict[str, int], remaining: int) -> FilterReport:
    """FilterReport(name, rejected, reasons, remaining), built faster (see above)."""
    f = _new(FilterReport)
    _f_filter(f, name)
    _f_rejected(f, rejected)
    _f_reasons(f, reasons)
    _f_remaining(f, remaining)
    return f


def explanation(hosts_considered: int, filters: list[FilterReport], candidates: int, top: list[Candidate],
                rule: str, detail: str, path: str) -> Explanation:
    """Explanation(...) with every field given, built faster (see above)."""
    e = _new(Explanation)
    s0, s1, s2, s3, s4, s5, s6 = _e_set
    s0(e, hosts_considered)
    s1(e, filters)
    s2(e, candidates)
    s3(e, top)
    s4(e, rule)
    s5(e, detail)
    s6(e, path)
    return e


def decision(request: str, host: str | None, host_index: int | None, expl: Explanation) -> Decision:
    """Decision(...), built faster (its fields straight into the instance dict)."""
    d = _new(Decision)
    fields = d.__dict__
    fields["request"], fields["host"] = request, host
    fields["host_index"], fields["explanation"] = host_index, expl
    return d
