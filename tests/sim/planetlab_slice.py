"""The first hours of a shipped PlanetLab day at full scale (800 hosts, every VM): the bounded
sibling of the whole-day replays marked slow. The engine is causal (an epoch reads only the
trace up to its own time), so a run that ends after N hours makes exactly the decisions the
whole-day run makes in those hours: its record is a prefix of the whole day's."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np

from conftest import require_shared_data
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.result import SimResult
from poolvisor.sim.scenario import Scenario, cloudsim_planetlab
from poolvisor.traces.planetlab import read_planetlab


@cache
def _util(day: str) -> np.ndarray:
    util = read_planetlab(require_shared_data("planetlab", day)).util
    util.flags.writeable = False  # shared between tests: read once, never changed
    return util


def day_slice(day: str, hours: float) -> Scenario:
    """The CloudSim PlanetLab scenario of ``day``, ending ``hours`` after the start (0.1 s)."""
    sc = cloudsim_planetlab(_util(day), hosts=800, name=day)
    return dataclasses.replace(sc, end_s=sc.start_s + hours * 3600.0)


def run_slice(day: str, hours: float, policy: str, param: float | None, compat: bool,
              record: bool = False) -> tuple[Simulator, SimResult]:
    sim = Simulator(day_slice(day, hours), PolicySpec.parse(policy, param), compat=compat, record=record)
    return sim, sim.run()
