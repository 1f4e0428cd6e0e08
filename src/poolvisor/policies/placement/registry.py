"""Explicit registries of filters and scorers (name -> factory), extended by entry points.

Third-party policies register under the entry-point groups `poolvisor.filters` and
`poolvisor.scorers`; configuration then names them like the built-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.placement import filters as f
from poolvisor.policies.placement import gpushare
from poolvisor.policies.placement import scorers as s
from poolvisor.policies.placement.scarce import KeepScarceFreeScorer

FILTERS: dict[str, Callable[[], f.Filter]] = {}
SCORERS: dict[str, Callable[[], s.Scorer]] = {}
_plugins_loaded = False


def register_filter(name: str, factory: Callable[[], f.Filter]) -> None:
    FILTERS[name] = factory


def register_scorer(name: str, factory: Callable[[], s.Scorer]) -> None:
    SCORERS[name] = factory


for _cls in (f.HostStateFilter, f.AllowedHostsFilter, f.CapacityFilter, f.LabelFilter, f.AffinityFilter,
             f.DomainSpreadFilter, f.MaxWorkloadsFilter):
    register_filter(_cls.name, _cls)
for _scls in (s.BestFitScorer, s.WorstFitScorer, s.BalancedScorer, s.DotProductScorer, s.GroupSoftScorer,
              KeepScarceFreeScorer):
    register_scorer(_scls.name, _scls)
register_filter(gpushare.GpuDeviceFilter.name, gpushare.GpuDeviceFilter)  # shared GPUs (per-device fit)
register_scorer(gpushare.FgdRiScorer.name, gpushare.FgdRiScorer)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="poolvisor.filters"):
        FILTERS.setdefault(ep.name, ep.load())
    for ep in entry_points(group="poolvisor.scorers"):
        SCORERS.setdefault(ep.name, ep.load())


def make_filter(name: str) -> f.Filter:
    _load_plugins()
    try:
        return FILTERS[name]()
    except KeyError:
        raise InvalidInputError(f"unknown filter {name!r}; known: {', '.join(sorted(FILTERS))}") from None


def make_scorer(name: str) -> s.Scorer:
    _load_plugins()
    try:
        return SCORERS[name]()
    except KeyError:
        raise InvalidInputError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}") from None
