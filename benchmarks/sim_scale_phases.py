"""Where the scale run spends its time.

`python benchmarks/sim_scale_phases.py [VMS HOSTS STEPS [POLICY [LIMIT]]]`; LIMIT: the underload
limit (max underloaded hosts tried per epoch; default: none).

Wraps the engine's phase methods (initial placement, planning, CPU sharing, migration start and
completion) with CPU-time counters and prints the running totals after every epoch. Diagnostic only:
the phase names are the simulator's method names and change with it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poolvisor.bench.sim_scale import scale_scenario
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.traces.synthetic import synthesize_planetlab

PHASES = ("initial_placement", "_plan", "_allocate", "_start", "_complete", "_remove_finished")


def main(argv: list[str]) -> None:
    vms, hosts, steps = (int(a) for a in (argv + ["100000", "10000", "4"][len(argv):])[:3])
    policy = argv[3] if len(argv) > 3 else "thr-mmt"
    limit = int(argv[4]) if len(argv) > 4 else None
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    data = Path(os.environ.get("POOLVISOR_SHARED_DATA", here))
    util = synthesize_planetlab([data / "planetlab" / "20110303"], vms, 0)
    sc = scale_scenario(util, hosts)
    sc = dataclasses.replace(sc, end_s=min(sc.end_s, 300.0 * steps + 0.1))  # at most the trace's day
    sim = Simulator(sc, PolicySpec.parse(policy, None), compat=False, underload_limit=limit)
    cpu: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def timed(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def g(*a: Any, **k: Any) -> Any:
            c = time.process_time()
            try:
                return f(*a, **k)
            finally:
                cpu[name] += time.process_time() - c
                calls[name] += 1

        return g

    for name in PHASES:
        if hasattr(sim, name):
            setattr(sim, name, timed(name, getattr(sim, name)))
    c0 = time.process_time()

    def progress(k: int, n: int) -> None:
        phases = {p: round(v, 1) for p, v in cpu.items()}
        used = time.process_time() - c0
        print(f"epoch {k}/{n} cpu {used:.1f} s {phases} migrations {sim.migrations}", flush=True)

    sim.run(progress)
    total = {p: (round(v, 1), calls[p]) for p, v in cpu.items()}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    used = time.process_time() - c0
    print(f"total cpu {used:.1f} s; (cpu s, calls) per phase {total}; peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
