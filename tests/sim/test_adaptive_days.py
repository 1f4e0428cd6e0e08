"""The default (adaptive) policy against CloudSim 3.0.3's best policy, LR-MMT-1.2, on each shipped
PlanetLab day: less energy, and no more SLAV and no more migrations (issue 16, item 4).

CloudSim's figures come from ``cloudsim-reference.csv`` (measured with CloudSim itself); the
policy runs in the default mode (docs/simulator.md), the mode the issue's comparison uses. The
whole days are marked slow (`make test-all`); the default run compares the first two hours of each.
"""

from __future__ import annotations

import csv

import pytest
from planetlab_slice import run_slice

from conftest import require_shared_data
from poolvisor.policies.balancing.adaptive import DEFAULT_BALANCING_POLICY
from poolvisor.sim.planetlab import simulate_planetlab

DAYS = ("20110303", "20110306", "20110309")


def _cloudsim_best(day: str) -> dict[str, str]:
    path = require_shared_data("planetlab", "cloudsim-reference.csv")
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r["day"], r["policy"], r["param"]) == (day, "lr-mmt", "1.2")]
    assert len(rows) == 1
    return rows[0]


@pytest.mark.slow
@pytest.mark.parametrize("day", DAYS)
def test_default_policy_beats_cloudsim_lr_mmt(day: str) -> None:
    ref = _cloudsim_best(day)
    res = simulate_planetlab(require_shared_data("planetlab", day), DEFAULT_BALANCING_POLICY, None, None)
    m = res.metrics
    assert m["vms"] == int(ref["vms"]) and m["hosts"] == int(ref["hosts"])
    assert m["energy_kwh"] < float(ref["energy_kwh"]), f"energy {m['energy_kwh']:.2f} vs {ref['energy_kwh']}"
    assert m["slav"] <= float(ref["slav"]), f"SLAV {m['slav']:.3e} vs {ref['slav']}"
    assert m["migrations"] <= int(ref["migrations"]), f"migrations {m['migrations']} vs {ref['migrations']}"


@pytest.mark.parametrize("day", DAYS)
def test_default_policy_beats_lr_mmt_on_the_first_two_hours(day: str) -> None:
    """The bounded sibling (run by default): the first two hours of each day at full scale, the
    default policy (default mode) against LR-MMT-1.2 in the CloudSim-compatible mode (whose
    step-level record equals CloudSim's on such a slice: test_cloudsim_compat.py)."""
    _, ours = run_slice(day, 2.0, DEFAULT_BALANCING_POLICY, None, compat=False)
    _, lr = run_slice(day, 2.0, "lr-mmt", 1.2, compat=True)
    m, ref = ours.metrics, lr.metrics
    assert m["vms"] == ref["vms"] == int(_cloudsim_best(day)["vms"]) and m["hosts"] == ref["hosts"] == 800
    assert ref["migrations"] > 1000  # the slice exercises the balancing
    assert m["energy_kwh"] < ref["energy_kwh"], f"energy {m['energy_kwh']:.2f} vs {ref['energy_kwh']:.2f}"
    assert m["slav"] <= ref["slav"], f"SLAV {m['slav']:.3e} vs {ref['slav']:.3e}"
    assert m["migrations"] <= ref["migrations"], f"migrations {m['migrations']} vs {ref['migrations']}"
