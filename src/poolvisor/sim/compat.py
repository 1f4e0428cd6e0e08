"""Which of CloudSim 3.0.3's behaviours the simulator reproduces (``--compat cloudsim``).

The consolidation policy (:mod:`poolvisor.policies.balancing`) has no CloudSim mode: it is the
paper's algorithm with named knobs. This configuration belongs to the simulator: some of its
flags are the simulator's own (what a VM at 0 % is, how the SLA metrics are pooled), the others
are translated into the policy's plain knobs by :meth:`Compat.plan_config`.
docs/simulator.md lists every behaviour and why it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from poolvisor.policies.balancing.consolidation import PlanConfig
from poolvisor.policies.balancing.detection import Detector
from poolvisor.policies.balancing.power import PowerTable
from poolvisor.policies.balancing.selection import Selector


@dataclass(frozen=True)
class Compat:
    """One flag per CloudSim behaviour; all False is the paper's definitions (the default mode)."""

    # --- the simulator's own -------------------------------------------------------------
    #: a VM requesting 0 MIPS at an update is "finished" and removed for good
    idle_vms_finish: bool = False
    #: RAM never constrains placement after t = 0 (running VMs request 0 MB); no --check-ram
    ram_ignored: bool = False
    #: SLATAH and PDM are pooled ratios (total violation time / total active time, lost MIPS /
    #: requested MIPS) instead of means over hosts and over VMs
    pooled_sla: bool = False
    #: a VM's in-migration flag is cleared at its first migration completion, even if another copy
    #: of it is still in flight
    migration_flag_cleared_early: bool = False
    # --- translated into policy knobs (PlanConfig, Detector) ----------------------------
    #: PABFD measures the power increase from the power measured at the start of the step
    measured_power_reference: bool = False
    #: PABFD charges an empty host from its idle power P(0), as if it were on
    empty_hosts_draw_idle: bool = False
    #: the underload phase may empty a host that just received VMs from an overloaded host
    relief_targets_emptied: bool = False
    #: LR and LRR fit by ordinary least squares (CloudSim computes the weights, never applies them)
    unweighted_regression: bool = False

    @classmethod
    def parse(cls, mode: str | None) -> Compat:
        """``"cloudsim"`` or None (the paper's definitions)."""
        return CLOUDSIM if mode == "cloudsim" else PAPER

    @property
    def label(self) -> str | None:
        """``"cloudsim"``, None (no CloudSim behaviour), or the flags that are on, joined by '+'."""
        if self == CLOUDSIM:
            return "cloudsim"
        on = [f.name for f in fields(self) if getattr(self, f.name)]
        return "+".join(on) or None

    def detector(self, kind: str, param: float, fallback: float, interval_s: float) -> Detector:
        weighted = not self.unweighted_regression
        return Detector(kind, param, weighted=weighted, fallback=fallback, interval_s=interval_s)

    def plan_config(
        self,
        power: PowerTable,
        detector: Detector,
        selector: Selector,
        underload_limit: int | None = None,
    ) -> PlanConfig:
        """The policy's knobs for this compat configuration."""
        return PlanConfig(
            power=power,
            detector=detector,
            selector=selector,
            power_reference="measured" if self.measured_power_reference else "planned",
            empty_host_power="idle" if self.empty_hosts_draw_idle else "off",
            spare_relief_targets=not self.relief_targets_emptied,
            underload_limit=underload_limit,
        )


#: CloudSim 3.0.3, rule for rule (docs/simulator.md, "CloudSim-compatible mode")
CLOUDSIM = Compat(**{f.name: True for f in fields(Compat)})
#: the paper's definitions, CloudSim's quirks fixed
PAPER = Compat()
