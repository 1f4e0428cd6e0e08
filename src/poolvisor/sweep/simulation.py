"""Sweep task for trace-driven simulation: one grid point -> one simulator run -> its metrics.

Module-level so it pickles by reference for process pools and Dask workers. The simulator is
imported inside the task so that merely building a grid does not load the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sweep.grid import Point, expand_grid


def resolve_policies(policies: Sequence[str]) -> tuple[list[str], frozenset[str]]:
    """Canonical policy names (the simulator's parser; unknown names fail here, before any run)
    and the subset that takes no parameter (npa, dvfs)."""
    from poolvisor.sim.engine import PolicySpec

    specs = [PolicySpec.parse(p, None) for p in policies]
    names = [s.name for s in specs]
    return names, frozenset(s.name for s in specs if s.param is None)


def default_param(policy: str) -> float | None:
    """The parameter the simulator uses when none is given (e.g. 0.8 for thr-mmt)."""
    from poolvisor.sim.engine import PolicySpec

    return PolicySpec.parse(policy, None).param


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float | str | bool) or v is None


def planetlab_task(point: Point) -> dict[str, Any]:
    """Simulate one PlanetLab day directory with one policy/parameter/seed; returns the scalar metrics."""
    from poolvisor.sim.planetlab import simulate_planetlab

    compat = point.get("compat")
    args = (point["trace_dir"], point["policy"], point.get("param"), None if compat == "default" else compat)
    hosts = point.get("sim_hosts")
    if hosts:
        res = simulate_planetlab(*args, seed=int(point["seed"]), hosts=int(hosts))
    else:
        res = simulate_planetlab(*args, seed=int(point["seed"]))
    out = {k: (v.item() if hasattr(v, "item") else v) for k, v in res.metrics.items()}
    return {k: v for k, v in out.items() if _scalar(v)}


def simulation_points(
    traces: Sequence[str | Path],
    policy_params: dict[str, list[float | None]],
    seeds: Sequence[int],
    compat: str | None = None,
    hosts: int | None = None,
) -> list[Point]:
    """Grid over policies × their parameters × traces × seeds, in that order of nesting.

    `hosts` overrides the scenario's host count (800 in CloudSim's PlanetLab scenario).
    """
    if hosts is not None and hosts < 1:
        raise InvalidInputError("--hosts must be at least 1")
    dirs = [Path(t) for t in traces]
    for d in dirs:
        if not d.is_dir():
            raise InvalidInputError(f"trace directory not found: {d}")
    names = [d.name for d in dirs]
    if len(set(names)) != len(names):  # two dirs with the same basename: label them by full path
        names = [str(d) for d in dirs]
    points: list[Point] = []
    for policy, given in policy_params.items():
        # record the parameter actually used, so default runs are labelled like explicit ones
        params = list(dict.fromkeys(default_param(policy) if v is None else v for v in given))
        for p in expand_grid({"param": params, "trace": list(range(len(dirs))), "seed": seeds}):
            points.append(
                {
                    "policy": policy,
                    "param": p["param"],
                    "trace": names[p["trace"]],
                    "seed": p["seed"],
                    "compat": compat or "default",
                    "trace_dir": str(dirs[p["trace"]]),
                    **({"sim_hosts": hosts} if hosts else {}),
                }
            )
    return points


#: point keys that only steer the task (the metrics report them: `hosts`) and stay out of the CSV
TASK_ONLY_KEYS = ("trace_dir", "sim_hosts")
