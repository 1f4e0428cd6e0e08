"""CloudSim's quirks are the simulator's compat configuration (sim.compat), translated into the
policy's named knobs; the policy's own configuration has no CloudSim mode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.consolidation import PlanConfig
from poolvisor.policies.balancing.detection import Detector
from poolvisor.policies.balancing.power import HP_ML110_G4, PowerTable
from poolvisor.policies.balancing.selection import Selector
from poolvisor.sim.compat import CLOUDSIM, PAPER, Compat
from poolvisor.sim.engine import PolicySpec, Simulator
from poolvisor.sim.scenario import cloudsim_planetlab

POWER = PowerTable.of(HP_ML110_G4)


def test_cloudsim_maps_onto_the_policy_knobs() -> None:
    d = CLOUDSIM.detector("lr", 1.2, 0.7, 300.0)
    cfg = CLOUDSIM.plan_config(POWER, d, Selector("mmt"))
    assert (cfg.power_reference, cfg.empty_host_power) == ("measured", "idle")
    assert not cfg.spare_relief_targets
    assert not d.weighted and d.fallback == 0.7
    paper = PAPER.plan_config(POWER, PAPER.detector("lr", 1.2, 0.7, 300.0), Selector("mmt"))
    default = PlanConfig(power=POWER, detector=Detector("lr", 1.2), selector=Selector("mmt"))
    knobs = ("power_reference", "empty_host_power", "spare_relief_targets", "underload", "underload_limit")
    for knob in knobs:
        assert getattr(paper, knob) == getattr(default, knob), knob  # the paper's policy is the default
    assert paper.detector == default.detector


def test_the_policy_configuration_has_no_cloudsim_mode() -> None:
    """A class-level check: no knob of the policy or its detector is a compat switch."""
    names = [f.name for f in dataclasses.fields(PlanConfig)] + [f.name for f in dataclasses.fields(Detector)]
    assert not [n for n in names if any(w in n for w in ("compat", "cloudsim", "stale", "quirk"))]


def test_unknown_knob_values_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="power_reference"):
        PlanConfig(power=POWER, detector=Detector("thr", 0.8), power_reference="stale")
    with pytest.raises(InvalidInputError, match="empty_host_power"):
        PlanConfig(power=POWER, detector=Detector("thr", 0.8), empty_host_power="on")


def test_parse_and_labels() -> None:
    assert Compat.parse("cloudsim") == CLOUDSIM and Compat.parse(None) == PAPER
    assert CLOUDSIM.label == "cloudsim" and PAPER.label is None
    assert Compat(idle_vms_finish=True, pooled_sla=True).label == "idle_vms_finish+pooled_sla"
    assert all(getattr(CLOUDSIM, f.name) for f in dataclasses.fields(Compat))


def test_simulator_applies_single_flags() -> None:
    """One CloudSim behaviour at a time: VMs at 0 % finishing is the only one DVFS depends on."""
    util = np.full((2, 288), 50.0)
    util[0, 3:5] = 0.0
    sc = cloudsim_planetlab(util, hosts=4)
    spec = PolicySpec.parse("dvfs", None)
    full = Simulator(sc, spec, compat=True)
    assert full.quirks == CLOUDSIM and Simulator(sc, spec, compat=False).quirks == PAPER
    one = Simulator(sc, spec, compat=Compat(idle_vms_finish=True)).run()
    assert one.compat == "idle_vms_finish"
    assert one.metrics["energy_kwh"] == full.run().metrics["energy_kwh"]
    assert one.metrics["energy_kwh"] < Simulator(sc, spec, compat=False).run().metrics["energy_kwh"]
    with pytest.raises(InvalidInputError, match="underload limit"):
        Simulator(sc, PolicySpec.parse("thr-mmt", None), compat=Compat(pooled_sla=True), underload_limit=3)
