"""The PlanetLab simulator under the live controller's balancing limits: the same `admit`
(policies/balancing/limits.py) decides which planned migrations start; default mode only."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing import limits as limits_module
from poolvisor.policies.balancing.limits import Limits
from poolvisor.sim import engine
from poolvisor.sim.planetlab import simulate_planetlab
from poolvisor.sim.scenario import cloudsim_planetlab


def _trace(tmp_path: Path, n: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = tmp_path / "day"
    d.mkdir()
    base = rng.integers(0, 70, size=(n, 1))
    vals = np.clip(base + rng.integers(-25, 35, size=(n, 288)), 0, 100)
    for i in range(n):
        (d / f"vm {i:03d}").write_text("\n".join(str(x) for x in vals[i]) + "\n")
    return d


def test_the_simulator_calls_the_controllers_admit(tmp_path: Path, monkeypatch) -> None:
    assert engine.admit is limits_module.admit  # one function, imported, not copied
    calls: list[int] = []
    real = limits_module.admit

    def spy(src, dst, **kw):  # type: ignore[no-untyped-def]
        calls.append(int(src.size))
        return real(src, dst, **kw)

    monkeypatch.setattr(engine, "admit", spy)
    res = simulate_planetlab(_trace(tmp_path), "thr-mmt", 0.8, None, hosts=30, limits=Limits())
    assert calls and sum(calls) == res.metrics["migrations"] + res.metrics["held_by_limits"]


def test_every_migration_respects_the_limits(tmp_path: Path) -> None:
    d = _trace(tmp_path)
    free = simulate_planetlab(d, "thr-mmt", 0.8, None, hosts=30, record=True)
    lim = Limits(per_host=1, per_pool=3, cooldown_s=1800)
    res = simulate_planetlab(d, "thr-mmt", 0.8, None, hosts=30, record=True, limits=lim)
    assert res.metrics["held_by_limits"] > 0 and "held_by_limits" not in free.metrics
    assert 0 < res.metrics["migrations"] < free.metrics["migrations"]
    sc = cloudsim_planetlab(np.zeros((40, 289)), hosts=30)
    bw = sc.host_bw / (2 * 8000)
    ram = sc.vm_ram
    moves = res.debug["migrations"]  # (t, vm, src, dst)
    flights = [(t, t + ram[v] / bw[dst], v, src, dst) for t, v, src, dst in moves]
    last: dict[int, float] = {}
    by_t: dict[float, list[tuple[float, float, int, int, int]]] = defaultdict(list)
    for f in flights:
        by_t[f[0]].append(f)
    for t in sorted(by_t):
        # in flight at t (one ending at t too: the tick runs before that completion), new ones included
        live = [f for f in flights if f[0] <= t <= f[1]]
        assert len(live) <= lim.per_pool
        per_host: dict[int, int] = defaultdict(int)
        for _t, _e, _v, s, dst in live:
            per_host[s] += 1
            per_host[dst] += 1
        assert max(per_host.values()) <= lim.per_host
        for _t, _e, v, _s, _d in by_t[t]:
            assert t - last.get(v, -np.inf) >= lim.cooldown_s
            last[v] = t


def test_limits_need_the_default_mode(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="default mode"):
        simulate_planetlab(_trace(tmp_path), "lr-mmt", 1.2, "cloudsim", hosts=10, limits=Limits())


def test_cli_limits_option(tmp_path: Path, capsys) -> None:
    import json

    from poolvisor.cli.errors import run_guarded
    from poolvisor.cli.main import app

    d = str(_trace(tmp_path))

    def cli(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as e:
            run_guarded(lambda: app(["simulate", "planetlab", d, "--hosts", "30", *argv],
                                    standalone_mode=True))
        out = capsys.readouterr()
        return int(e.value.code or 0), out.out, out.err

    code, out, err = cli("--limits", "per_host=1,per_pool=2,cooldown=600", "--json")
    assert code == 0, err
    assert json.loads(out)["held_by_limits"] > 0
    for bad in ("per_host=0", "per_host=1.5", "cooldown=x", "speed=3", ""):
        code, out, err = cli("--limits", bad)
        assert code != 0 and err.startswith("poolvisor: error: --limits") and err.count("\n") == 1, err
    code, out, err = cli("--limits", "controller", "--compat", "cloudsim")
    assert code != 0 and "default mode" in err
