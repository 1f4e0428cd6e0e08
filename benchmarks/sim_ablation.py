"""Default mode with one CloudSim behaviour put back at a time (docs/simulator.md, ablation table).

`python benchmarks/sim_ablation.py [DAY_DIR [POLICY]]` (default: the shipped 20110303, thr-mmt)
prints one Markdown row per variant: energy, migrations, SLATAH.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.scenario import Scenario, cloudsim_planetlab
from poolvisor.traces.planetlab import read_planetlab


class _IdleRemoved(Simulator):
    """Default mode, but VMs at 0 MIPS are removed for good, as CloudSim's 'finished' VMs."""

    def _remove_finished(self, req: np.ndarray) -> None:
        compat, self.compat = self.compat, True
        try:
            super()._remove_finished(req)
        finally:
            self.compat = compat


def row(sc: Scenario, spec: PolicySpec, label: str, cls: type[Simulator] = Simulator, **plan: Any) -> str:
    sim = cls(sc, spec, compat=False)
    assert sim.plan_cfg is not None
    sim.plan_cfg = dataclasses.replace(sim.plan_cfg, **plan)
    m = sim.run().metrics
    return f"| {label} | {m['energy_kwh']:.2f} | {m['migrations']:,} | {m['slatah']:.5f} |"


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    shared = Path(os.environ.get("POOLVISOR_SHARED_DATA", here))
    day = Path(argv[0]) if argv else shared / "planetlab" / "20110303"
    spec = PolicySpec.parse(argv[1] if len(argv) > 1 else "thr-mmt", None)
    sc = cloudsim_planetlab(read_planetlab(day).util, hosts=800, name=day.name)
    print("| variant | energy kWh | migrations | SLATAH |\n|---|---|---|---|")
    for label, cls, plan in (
        ("default", Simulator, {}),
        ("+ idle VMs removed (CloudSim's \"finished\" VMs)", _IdleRemoved, {}),
        ("+ switched-off hosts charged from the idle power P(0) in PABFD", Simulator,
         {"off_hosts_draw_nothing": False}),
        ("+ stale power reference in PABFD", Simulator, {"stale_power": True}),
        ("+ overload targets not excluded", Simulator, {"exclude_overload_targets": False}),
        ("+ P(0) for switched-off hosts + stale power + idle VMs removed", _IdleRemoved,
         {"off_hosts_draw_nothing": False, "stale_power": True}),
    ):  # fmt: skip
        print(row(sc, spec, label, cls, **plan), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
