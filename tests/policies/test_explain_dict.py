"""Explanation.to_dict, written out field by field, is what dataclasses.asdict gave (plus the
summary and each filter's dominant reason), and shares no container with the explanation."""

from __future__ import annotations

from dataclasses import asdict, fields

from poolvisor.policies.placement.explain import Candidate, Explanation, FilterReport


def _by_asdict(e: Explanation) -> dict:  # type: ignore[type-arg]
    d = asdict(e)
    d["summary"] = e.summary()
    for f, rep in zip(d["filters"], e.filters, strict=True):
        f["dominant_reason"] = rep.dominant_reason
    return d


def test_to_dict_is_asdict_plus_summary() -> None:
    capacity = FilterReport("capacity", 3, {"insufficient vcpu": 2, "insufficient memory_mib": 1}, 2)
    full = Explanation(5, [capacity, FilterReport("labels", 0, {}, 2)], 2,
                       [Candidate("h1", 0.75, {"spread": 0.5, "pack": 1.0}), Candidate("h2", 0.5, {})],
                       rule="least loaded", detail="summary", path="index")
    for e in (full, Explanation(0, [], 0)):
        d = e.to_dict()
        assert d == _by_asdict(e) and list(d) == [f.name for f in fields(Explanation)] + ["summary"]
        assert [list(f) for f in d["filters"]] == [list(f) for f in _by_asdict(e)["filters"]]
    d = full.to_dict()
    d["filters"][0]["reasons"]["x"] = 1
    d["top"][0]["scores"]["x"] = 1.0
    assert "x" not in full.filters[0].reasons and "x" not in full.top[0].scores
