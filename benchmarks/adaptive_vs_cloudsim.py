"""The default policy (adaptive) against CloudSim 3.0.3's best, LR-MMT-1.2 (README table).

`python benchmarks/adaptive_vs_cloudsim.py` prints one Markdown row per shipped day and policy:
energy, SLATAH, PDM, SLAV, ESV, migrations, host shutdowns; CloudSim's figures come from
`cloudsim-reference.csv`. The adaptive rows also give SLATAH x PDM with CloudSim's pooled
definitions (`pooled SLAV`: the same run, metrics only).

`--sensitivity` then runs the policy with one knob changed at a time (acceptance safety, trigger,
payback horizon, evacuation order) and prints energy / migrations / SLAV relative to CloudSim in %
per day (docs/simulator.md, "Sensitivity").

`--derived` also builds days that are not shipped (in a temporary directory): each shipped day
rotated by 12 h (the day starts at noon) and two 1,000-VM random mixes of the three days
(seeds 1, 2); CloudSim's figures for those are the compat mode's (`--compat cloudsim`, equal to
CloudSim 3.0.3 on every shipped day, tests/sim/test_cloudsim_compat.py).
"""

from __future__ import annotations

import csv
import os
import random
import sys
import tempfile
from pathlib import Path

from poolvisor.policies.balancing.adaptive import DEFAULT_BALANCING_POLICY, AdaptiveConfig
from poolvisor.policies.balancing.planner import AdaptivePolicy
from poolvisor.sim.compat import PAPER, Compat
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.planetlab import simulate_planetlab
from poolvisor.sim.scenario import Scenario, cloudsim_planetlab
from poolvisor.traces.planetlab import read_planetlab

DAYS = ("20110303", "20110306", "20110309")
KEYS = ("energy_kwh", "slatah", "pdm", "slav", "migrations", "host_shutdowns")


def fmt(label: str, m: dict[str, float], extra: str = "") -> str:
    esv = m["energy_kwh"] * m["slav"]
    return (
        f"| {label} | {m['energy_kwh']:.2f} | {m['slatah']:.5f} | {m['pdm']:.6f} | {m['slav']:.3e} | "
        f"{esv:.3e} | {int(m['migrations']):,} | {int(m['host_shutdowns']):,} | {extra} |"
    )


A = AdaptiveConfig
#: one knob changed at a time: (label, acceptance safety, mechanism knobs)
VARIANTS: tuple[tuple[str, float, AdaptiveConfig], ...] = (
    ("default", 1.2, A()),
    ("safety 1.1", 1.1, A()),
    ("safety 1.15", 1.15, A()),
    ("safety 1.25", 1.25, A()),
    ("safety 1.3", 1.3, A()),
    ("trigger 0.95", 1.2, A(trigger_safety=0.95)),
    ("trigger 1.05", 1.2, A(trigger_safety=1.05)),
    ("trigger 1.1", 1.2, A(trigger_safety=1.1)),
    ("payback 300 s", 1.2, A(payback_horizon_s=300.0)),
    ("payback 600 s", 1.2, A(payback_horizon_s=600.0)),
    ("payback inf", 1.2, A(payback_horizon_s=float("inf"))),
    ("evacuation by utilization", 1.2, A(cheapest_first=False)),
    ("no band (trigger 1.2)", 1.2, A(trigger_safety=1.2)),
    ("payback 150 s", 1.2, A(payback_horizon_s=150.0)),
)


def run(sc: Scenario, safety: float, acfg: AdaptiveConfig) -> dict[str, float]:
    sim = Simulator(sc, PolicySpec.parse(DEFAULT_BALANCING_POLICY, safety), compat=PAPER)
    assert sim.plan_cfg is not None
    sim.policy = AdaptivePolicy(sim.plan_cfg, DEFAULT_BALANCING_POLICY, adaptive=acfg)
    return dict(sim.run().metrics)


def adaptive(day: Path) -> tuple[dict[str, float], float]:
    """The default policy in the default mode, and its SLAV with CloudSim's pooled ratios."""
    sc = cloudsim_planetlab(read_planetlab(day).util, hosts=800, name=day.name)
    spec = PolicySpec.parse(DEFAULT_BALANCING_POLICY, None)
    m = dict(Simulator(sc, spec, compat=PAPER).run().metrics)
    pooled = Simulator(sc, spec, compat=Compat(pooled_sla=True)).run().metrics  # same decisions
    assert pooled["migrations"] == m["migrations"]
    return m, float(pooled["slav"])


def sensitivity(days: list[Path], refs: list[dict[str, float]]) -> None:
    print("\n| variant | " + " | ".join(d.name for d in days) + " |\n" + "|---" * (len(days) + 1) + "|")
    scs = [cloudsim_planetlab(read_planetlab(d).util, hosts=800, name=d.name) for d in days]
    for label, safety, knobs in VARIANTS:
        cells = []
        for sc, ref in zip(scs, refs, strict=True):
            m = run(sc, safety, knobs)
            rel = [m[k] / ref[k] - 1 for k in ("energy_kwh", "migrations", "slav")]
            win = rel[0] < 0 and rel[1] <= 0 and rel[2] <= 0
            cells.append(" / ".join(f"{r:+.0%}" for r in rel) + ("" if win else " (no)"))
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def derive(shipped: Path, out: Path) -> list[Path]:
    """Rotated days and random mixes (module doc), written under ``out``."""
    made: list[Path] = []
    pool: list[tuple[str, str, list[str]]] = []
    for day in DAYS:
        d = out / f"{day}-r12"
        d.mkdir()
        for name in sorted(os.listdir(shipped / day)):
            vals = (shipped / day / name).read_text().split()
            (d / name).write_text("\n".join(vals[144:] + vals[:144]) + "\n")
            pool.append((day, name, vals))
        made.append(d)
    for seed in (1, 2):
        d = out / f"mix{seed}"
        d.mkdir()
        for day, name, vals in random.Random(seed).sample(pool, 1000):
            (d / f"{day[-4:]}_{name}").write_text("\n".join(vals) + "\n")
        made.append(d)
    return made


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    shipped = Path(os.environ.get("POOLVISOR_SHARED_DATA", here)) / "planetlab"
    with (shipped / "cloudsim-reference.csv").open(newline="") as f:
        ref = {r["day"]: r for r in csv.DictReader(f) if (r["policy"], r["param"]) == ("lr-mmt", "1.2")}
    cols = ["day / policy", "energy kWh", "SLATAH", "PDM", "SLAV", "ESV", "migrations", "shutdowns"]
    cols += ["pooled SLAV"]
    print("| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|")
    days, refs = [], []
    for day in DAYS:
        m, pooled = adaptive(shipped / day)
        cs = {k: float(ref[day][k]) for k in KEYS}
        print(fmt(f"{day} adaptive (default mode)", m, f"{pooled:.3e}"))
        print(fmt(f"{day} CloudSim LR-MMT-1.2", cs, f"{cs['slav']:.3e}"))
        days.append(shipped / day)
        refs.append(cs)
    with tempfile.TemporaryDirectory() as tmp:
        if "--derived" in argv:
            cols = ["derived day", "adaptive kWh / migrations / SLAV", "CloudSim LR-MMT-1.2", "beats"]
            print("\n| " + " | ".join(cols) + " |\n|---|---|---|---|")
        for d in derive(shipped, Path(tmp)) if "--derived" in argv else []:
            m, _ = adaptive(d)
            c = simulate_planetlab(d, "lr-mmt", 1.2, "cloudsim").metrics
            ok = m["energy_kwh"] < c["energy_kwh"] and m["slav"] <= c["slav"]
            ok = ok and m["migrations"] <= c["migrations"]
            ours = f"{m['energy_kwh']:.2f} / {int(m['migrations']):,} / {m['slav']:.2e}"
            theirs = f"{c['energy_kwh']:.2f} / {int(c['migrations']):,} / {c['slav']:.2e}"
            print(f"| {d.name} | {ours} | {theirs} | {'yes' if ok else 'NO'} |", flush=True)
            days.append(d)
            refs.append({k: float(c[k]) for k in KEYS})
        if "--sensitivity" in argv:
            sensitivity(days, refs)


if __name__ == "__main__":
    main(sys.argv[1:])
