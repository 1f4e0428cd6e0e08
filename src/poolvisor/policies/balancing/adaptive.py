"""The adaptive balancing policy: poolvisor's default (``poolvisor simulate planetlab`` and the
controller).

CloudSim's policies use one overload check for two questions: *when must a host shed VMs* and
*may this host take a VM*. A host filled up to that line by a placement crosses it again at the
next sample with a fair chance, sheds, and its VMs fill other hosts up to the same line: on a
PlanetLab day (default-mode LR-MMT-1.2) about two thirds of the relief migrations leave a host
that received a VM one step before. This policy keeps the paper's pieces (the LR forecast, MMT
selection, PABFD) and changes what they are asked:

1. **Hysteresis band from the forecast.** A destination must pass the detector's check with its
   safety margin (LR-1.2: forecast x 1.2 < 1, ``PlanConfig.detector``), but a host is relieved
   only when the same forecast says it will actually be saturated (forecast x ``trigger_safety``
   >= 1, 1.0 by default): the margin is spent on where VMs go, not on when they leave, so a host
   just filled does not trip at the next sample.
2. **Fewest migrations to relieve.** An overloaded host sheds VMs (MMT order) only until it is
   below the trigger, not below the acceptance line; the destinations have the headroom.
3. **Cheapest evacuation first.** Underloaded hosts are tried by increasing number of VMs (each
   evacuation saves about one host's idle power, whatever it costs in migrations), then by
   utilization; all or nothing, every destination under the acceptance check.
4. **Payback.** An evacuation whose migrations (total RAM over the migration bandwidth) cannot
   finish within the forecast's horizon is not made: the host would not be off before the load
   the decision was based on has changed. The horizon is as far ahead as the regression window
   reaches back (10 samples x 300 s = 50 min); PlanetLab hosts empty in at most a few minutes,
   so here it binds only for hosts with tens of VMs (a controller with 64 GB guests on 1 Gbit/s
   links needs it).

Pure: :func:`plan_adaptive` is a function of the view and the configuration, like
:func:`~poolvisor.policies.balancing.consolidation.plan_migrations`, whose planning state
(``_Planner``: the overload check, shedding and PABFD) it reuses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.actions import Action
from poolvisor.policies.balancing.consolidation import PlanConfig, PoolView, _Planner, migration_action
from poolvisor.policies.balancing.detection import RULE_UNDERLOAD, RULES
from poolvisor.policies.balancing.overload import rule_for

#: the policy's name (``--policy adaptive``)
ADAPTIVE = "adaptive"
#: the balancing policy used when none is named: the simulator's default and the controller's
DEFAULT_BALANCING_POLICY = ADAPTIVE


@dataclass(frozen=True)
class AdaptiveConfig:
    """The mechanism's knobs (module doc); the defaults come from the model, not from a trace."""

    #: relieve a host when its forecast x this >= 1 (1.0: the forecast reaches the capacity);
    #: must not exceed the detector's safety parameter, or the band would be inverted
    trigger_safety: float = 1.0
    #: evacuations whose total migration time exceeds this are not made (None: the forecast's
    #: horizon, regression window x decision interval; inf: no limit)
    payback_horizon_s: float | None = None
    #: try underloaded hosts fewest VMs first (False: by utilization only, as CloudSim)
    cheapest_first: bool = True

    def __post_init__(self) -> None:
        if not self.trigger_safety > 0:
            raise InvalidInputError("trigger_safety must be > 0")
        if self.payback_horizon_s is not None and not self.payback_horizon_s > 0:
            raise InvalidInputError("payback_horizon_s must be > 0")


def trigger_config(cfg: PlanConfig, acfg: AdaptiveConfig) -> PlanConfig:
    """``cfg`` with the relief trigger as its detector: the same forecast without the safety margin
    (the static fallback threshold for short histories scaled the same way, at most 1)."""
    d = cfg.detector
    if d.kind not in ("lr", "lrr"):
        raise InvalidInputError(f"the adaptive policy forecasts with lr or lrr, not {d.kind!r}")
    if acfg.trigger_safety > d.param:
        raise InvalidInputError(
            f"trigger_safety {acfg.trigger_safety} above the detector's safety {d.param}: no hysteresis band"
        )
    fallback = min(1.0, d.fallback * d.param / acfg.trigger_safety)
    return replace(cfg, detector=replace(d, param=acfg.trigger_safety, fallback=fallback))


def plan_adaptive(view: PoolView, cfg: PlanConfig, acfg: AdaptiveConfig | None = None) -> list[Action]:
    """The migrations of one decision epoch (module doc); ``cfg.detector`` is the acceptance check
    (e.g. LR-1.2), ``cfg.power`` PABFD's power model. The view is not modified. Each is a migrate
    :class:`~poolvisor.policies.balancing.actions.Action` explained as plan_migrations' are
    (rule, source and destination utilization, request, hosts weighed)."""
    acfg = acfg or AdaptiveConfig()
    trig = trigger_config(cfg, acfg)
    p = _Planner(view, trig)  # detection and shedding ask the trigger
    H = view.total.size
    all_hosts = np.arange(H)
    over, rule = p.detect(all_hosts)

    # 1-2. relief: MMT order, until the host is below the trigger
    picked: list[tuple[int, int, str]] = []
    for h in np.flatnonzero(over).tolist():
        lst = p.lists[h]
        if not lst:
            continue
        idx = np.asarray(lst)
        order = np.argsort(view.ram[idx], kind="stable")
        gone = order[: p.shed_count(h, idx, order)]
        keep = np.ones(idx.size, dtype=bool)
        keep[gone] = False
        lst[:] = idx[keep].tolist()
        p.stats_of(h, lst)
        picked.extend((vm, h, RULES[rule[h]]) for vm in idx[gone].tolist())

    # placement asks the acceptance check (the detector with its safety margin)
    p.cfg = cfg
    p.rule = rule_for(cfg.detector, view.hist.shape[1], view.mig_bw_mb_s)
    out: list[Action] = []
    mu_l = view.measured_u.tolist()
    src_rule = {vm: (s, r) for vm, s, r in picked}
    batch = p.by_demand(list(src_rule))
    targets = all_hosts[~over]
    dsts = p.place_batch(batch, targets, all_or_nothing=False) if batch else []
    for vm, dst in zip(batch, dsts or [], strict=True):
        if dst >= 0:
            s, r = src_rule[vm]
            out.append(migration_action(mu_l, p.req_l, vm, s, dst, r, targets.size))
    if not cfg.underload:
        return out

    # 3-4. evacuations: cheapest first, all or nothing, only if they pay back within the horizon
    horizon = acfg.payback_horizon_s or cfg.detector.regression_window * cfg.detector.interval_s
    mu = view.measured_u
    off = mu == 0
    excl_src = over | off
    place_ok = ~(over | off)
    for m in out:  # a host that just received VMs is not emptied in the same step
        excl_src[m.dst] = True
    nvm = np.fromiter(map(len, p.lists), dtype=np.intp, count=H)
    sources = np.flatnonzero(~excl_src & (mu < 1) & (nvm > 0))
    keys = (sources, mu[sources], nvm[sources]) if acfg.cheapest_first else (sources, mu[sources])
    sources = sources[np.lexsort(keys)]
    tries = 0
    for h in sources.tolist():
        if excl_src[h]:
            continue
        if cfg.underload_limit is not None and tries >= cfg.underload_limit:
            break
        tries += 1
        excl_src[h] = True
        vms = p.lists[h]
        if float(view.ram[vms].sum()) / view.mig_bw_mb_s > horizon:
            continue  # stays on: still a destination
        place_ok[h] = False
        batch = p.by_demand(list(vms))
        targets = np.flatnonzero(place_ok)
        dsts = p.place_batch(batch, targets, all_or_nothing=True)
        if dsts is None:
            continue
        for vm, dst in zip(batch, dsts, strict=True):
            excl_src[dst] = True
            out.append(migration_action(mu_l, p.req_l, vm, h, dst, RULES[RULE_UNDERLOAD], targets.size))
    return out
