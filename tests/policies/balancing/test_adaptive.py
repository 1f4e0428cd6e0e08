"""The adaptive policy's mechanism on tiny pools with LR histories (constant loads: the forecast is
the current utilization): hysteresis band, fewest-migration relief, cheapest evacuation first,
payback horizon."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.adaptive import AdaptiveConfig, plan_adaptive, trigger_config
from poolvisor.policies.balancing.consolidation import PlanConfig, PoolView, plan_migrations
from poolvisor.policies.balancing.detection import Detector
from poolvisor.policies.balancing.power import HP_ML110_G4, PowerTable
from poolvisor.sim.engine import PolicySpec

POWER = PowerTable.of(HP_ML110_G4)
L = 10  # the LR window


def view(lists: list[list[int]], req: list[float], ram: list[float], total: float = 2000.0) -> PoolView:
    """Hosts of 2 x total/2 MIPS, VMs of 1000 MIPS with a constant load over the last L samples."""
    H, V = len(lists), len(req)
    r = np.array(req, dtype=float)
    tot = np.full(H, total)
    host_req = np.array([r[lst].sum() for lst in lists])
    vm_hist = np.repeat((r / 1000.0)[:, None], L, axis=1)
    contrib = (vm_hist * 1000.0 / total)[None]  # (1 history type, V, L)
    hist = np.array([contrib[0, lst].sum(axis=0) if lst else np.zeros(L) for lst in lists])
    return PoolView(
        total=tot,
        pe=tot / 2,
        model=np.zeros(H, dtype=np.intp),
        htype=np.zeros(H, dtype=np.intp),
        measured_u=host_req / tot,
        alloc_sum=host_req,
        avail=tot - host_req,
        req_sum=host_req.copy(),
        ram_free=np.full(H, 1e9),
        hist=hist,
        hlen=np.array([L if lst else 0 for lst in lists], dtype=np.int64),
        max_ram=np.array([max((ram[v] for v in lst), default=-np.inf) for lst in lists]),
        lists=[list(x) for x in lists],
        req=r,
        mips=np.full(V, 1000.0),
        ram=np.array(ram, dtype=float),
        vm_hist=vm_hist,
        vm_hlen=np.full(V, L, dtype=np.int64),
        contrib=contrib,
    )


def cfg(safety: float = 1.2, **kw: object) -> PlanConfig:
    return PlanConfig(power=POWER, detector=Detector("lr", safety), **kw)  # type: ignore[arg-type]


def moves(plan: list) -> list[tuple[int, int, int, str]]:  # type: ignore[type-arg]
    return [(m.workload, m.src, m.dst, m.rule) for m in plan]


def test_host_inside_the_band_is_not_relieved() -> None:
    # host 0 forecast 0.9: LR-1.2 (0.9 x 1.2 >= 1) relieves it, the adaptive trigger (0.9 < 1) does not
    v = view([[0, 1], [2]], req=[900, 900, 300], ram=[1000, 500, 800])
    assert moves(plan_migrations(v, cfg()))[0][:3] == (1, 0, 1)
    assert plan_adaptive(v, cfg()) == []
    # at the forecast 1.05 it is relieved
    v = view([[0, 1, 2], [3]], req=[700, 700, 700, 300], ram=[1000, 500, 800, 800])
    assert moves(plan_adaptive(v, cfg(underload=False))) == [(1, 0, 1, "lr")]


def test_relief_sheds_to_the_trigger_and_places_under_the_acceptance_check() -> None:
    # host 0 at 1.1 (VMs 1000, 300, 900 MIPS; RAM makes the MMT order 1, 2, 0). Leaving VM 1 brings
    # it to 0.95: below the trigger (1), so one migration; LR-1.2 also moves VM 2 (0.95 x 1.2 >= 1).
    # Host 1 (0.7) would take VM 1 at 0.85, below the trigger but not under the acceptance check
    # (0.85 x 1.2 >= 1); host 2 (0.5) takes it at 0.65. Host 3 is switched off.
    lists = [[0, 1, 2], [3], [4], []]
    v = view(lists, req=[1000, 300, 900, 1400, 1000], ram=[2000, 500, 800, 100, 100])
    paper = moves(plan_migrations(v, cfg(underload=False)))
    assert sorted(m[0] for m in paper) == [1, 2]
    assert moves(plan_adaptive(v, cfg(underload=False))) == [(1, 0, 2, "lr")]
    # the robust forecast (LRR, numpy only) asks the same questions: same plan on constant loads
    lrr = PlanConfig(power=POWER, detector=Detector("lrr", 1.2), underload=False)
    assert moves(plan_adaptive(v, lrr)) == [(1, 0, 2, "lrr")]
    # with the acceptance check only as strict as the trigger (no band) host 1 would take it
    no_band = plan_adaptive(v, cfg(safety=1.0, underload=False))
    assert moves(no_band) == [(1, 0, 1, "lr")]
    assert v.lists == lists  # the view is left untouched


def test_cheapest_evacuation_first() -> None:
    # host 0: one VM at 0.35; host 1: three VMs, 0.15 in all. CloudSim's order (least utilized
    # first) empties host 1 with three migrations; fewest VMs first empties host 0 with one.
    v = view([[0], [1, 2, 3]], req=[700, 100, 100, 100], ram=[100, 100, 100, 100])
    assert moves(plan_adaptive(v, cfg())) == [(0, 0, 1, "underload")]
    by_util = plan_adaptive(v, cfg(), AdaptiveConfig(cheapest_first=False))
    assert [(m.src, m.dst) for m in by_util] == [(1, 0)] * 3


def test_evacuation_whose_migrations_outlast_the_horizon_is_not_made() -> None:
    # the horizon: the LR window (10 samples) x 300 s = 3,000 s. Host 0's two VMs need
    # 2 x 100,000 MB / 62.5 MB/s = 3,200 s to leave, host 1's one VM 4,000 s: neither is emptied
    big = view([[0, 1], [2]], req=[100, 100, 1000], ram=[100_000, 100_000, 250_000])
    assert plan_adaptive(big, cfg()) == []
    longer = plan_adaptive(big, cfg(), AdaptiveConfig(payback_horizon_s=3300.0))
    assert moves(longer) == [(0, 0, 1, "underload"), (1, 0, 1, "underload")]
    # a horizon of one decision interval forbids both evacuations (320 s and 400 s)
    short = view([[0, 1], [2]], req=[100, 100, 1000], ram=[10_000, 10_000, 25_000])
    assert len(plan_adaptive(short, cfg())) == 1
    assert plan_adaptive(short, cfg(), AdaptiveConfig(payback_horizon_s=300.0)) == []
    # the same pool with light VMs: host 1 (one VM) is the cheaper evacuation and pays back
    light = view([[0, 1], [2]], req=[100, 100, 1000], ram=[100, 100, 200])
    assert moves(plan_adaptive(light, cfg())) == [(2, 1, 0, "underload")]


def test_skipped_evacuation_keeps_the_host_as_a_destination() -> None:
    # host 1 (one VM, 250,000 MB: 4,000 s) is skipped for payback; host 0's two light VMs may
    # still go onto it
    v = view([[0, 1], [2]], req=[100, 100, 1000], ram=[100, 100, 250_000])
    assert [(m.src, m.dst) for m in plan_adaptive(v, cfg())] == [(0, 1), (0, 1)]


def test_trigger_and_configuration_errors() -> None:
    trig = trigger_config(cfg(), AdaptiveConfig())
    assert trig.detector.param == 1.0 and trig.detector.fallback == pytest.approx(0.84)
    assert trigger_config(cfg(safety=2.0), AdaptiveConfig()).detector.fallback == 1.0
    with pytest.raises(InvalidInputError, match="no hysteresis band"):
        trigger_config(cfg(safety=1.1), AdaptiveConfig(trigger_safety=1.2))
    with pytest.raises(InvalidInputError, match="lr or lrr"):
        trigger_config(PlanConfig(power=POWER, detector=Detector("thr", 0.8)), AdaptiveConfig())
    for bad in ({"trigger_safety": 0.0}, {"payback_horizon_s": -1.0}):
        with pytest.raises(InvalidInputError):
            AdaptiveConfig(**bad)  # type: ignore[arg-type]


def test_policy_name_and_parameter() -> None:
    spec = PolicySpec.parse("adaptive", None)
    assert (spec.name, spec.param, spec.detector, spec.selector) == ("adaptive", 1.2, "lr", "mmt")
    assert PolicySpec.parse("Adaptive-1.3", None).param == 1.3
    assert PolicySpec.parse("adaptive-1.3", 1.5).param == 1.5
    for bad in ("adaptive-0.9", "adaptive-x", "adaptive-mmt-1.2"):
        with pytest.raises(InvalidInputError):
            PolicySpec.parse(bad, None)
