"""Default mode with one CloudSim behaviour put back at a time (docs/simulator.md, ablation table).

Each variant is the paper's definitions (sim.compat.PAPER) with some of sim.compat's flags on.

`python benchmarks/sim_ablation.py [DAY_DIR [POLICY]]` (default: the shipped 20110303, thr-mmt)
prints one Markdown row per variant: energy, migrations, SLATAH.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from poolvisor.sim.compat import PAPER
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.scenario import Scenario, cloudsim_planetlab
from poolvisor.traces.planetlab import read_planetlab


def row(sc: Scenario, spec: PolicySpec, label: str, **quirks: bool) -> str:
    m = Simulator(sc, spec, compat=dataclasses.replace(PAPER, **quirks)).run().metrics
    return f"| {label} | {m['energy_kwh']:.2f} | {m['migrations']:,} | {m['slatah']:.5f} |"


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    shared = Path(os.environ.get("POOLVISOR_SHARED_DATA", here))
    day = Path(argv[0]) if argv else shared / "planetlab" / "20110303"
    spec = PolicySpec.parse(argv[1] if len(argv) > 1 else "thr-mmt", None)
    sc = cloudsim_planetlab(read_planetlab(day).util, hosts=800, name=day.name)
    print("| variant | energy kWh | migrations | SLATAH |\n|---|---|---|---|")
    for label, quirks in (
        ("default", {}),
        ("+ idle VMs removed (CloudSim's \"finished\" VMs)", {"idle_vms_finish": True}),
        ("+ switched-off hosts charged from the idle power P(0) in PABFD", {"empty_hosts_draw_idle": True}),
        ("+ stale power reference in PABFD", {"measured_power_reference": True}),
        ("+ overload targets not excluded", {"relief_targets_emptied": True}),
        ("+ P(0) for switched-off hosts + stale power + idle VMs removed",
         {"empty_hosts_draw_idle": True, "measured_power_reference": True, "idle_vms_finish": True}),
    ):  # fmt: skip
        print(row(sc, spec, label, **quirks), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
