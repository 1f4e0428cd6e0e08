"""Placement: filter -> weigh -> choose, vectorized over all hosts, with an explanation per decision."""

from poolvisor.policies.placement.explain import Decision, Explanation, FilterReport
from poolvisor.policies.placement.indexed import IndexedPlacer
from poolvisor.policies.placement.pipeline import PlacementPolicy, place, place_batch
from poolvisor.policies.placement.request import Request

__all__ = [
    "Decision",
    "Explanation",
    "FilterReport",
    "IndexedPlacer",
    "PlacementPolicy",
    "Request",
    "place",
    "place_batch",
]
