"""What-if: the live pool's placement and recorded utilization replayed under another policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.services import open_services
from poolvisor.sim.whatif import (
    PoolSnapshot,
    UtilizationHistory,
    load_history,
    pool_from_services,
    simulate_whatif,
)
from small_pool import fill_small_pool

H, V, T = 6, 16, 48


def _pool(vm_host: np.ndarray | None = None) -> PoolSnapshot:
    rng = np.random.default_rng(0)
    return PoolSnapshot(
        hosts=tuple(f"h{i}" for i in range(H)),
        host_cpu=np.full(H, 8.0),
        host_memory_mib=np.full(H, 32768.0),
        vms=tuple(f"vm{i}" for i in range(V)),
        vm_cpu=rng.choice([1.0, 2.0, 4.0], V),
        vm_memory_mib=np.full(V, 2048.0),
        vm_host=np.arange(V) % H if vm_host is None else vm_host,
    )


def _history() -> UtilizationHistory:
    rng = np.random.default_rng(1)
    t = np.arange(T)
    wave = 0.3 + 0.25 * np.sin(2 * np.pi * (t[None, :] / T + rng.random((V, 1))))
    return UtilizationHistory(np.clip(wave + rng.normal(0, 0.05, (V, T)), 0.01, 1), 300.0)


def test_consolidation_saves_energy_over_the_current_spread() -> None:
    pool, hist = _pool(), _history()
    base = simulate_whatif(pool, hist, "dvfs")  # never migrates: the pool as it is
    thr = simulate_whatif(pool, hist, "thr-mmt", 0.8)
    assert base.metrics["hosts"] == H and base.metrics["vms"] == V
    assert base.metrics["migrations"] == 0
    assert (base.active_hosts == H).all()  # every host keeps its loaded VMs
    assert len(base.time_s) == T - 1 and base.time_s[-1] == pytest.approx(300.0 * (T - 1))
    assert thr.metrics["migrations"] > 0 and sum(thr.rules.values()) == thr.metrics["migrations"]
    assert thr.active_hosts[-1] < H
    assert thr.metrics["energy_kwh"] < base.metrics["energy_kwh"]
    again = simulate_whatif(pool, hist, "thr-mmt", 0.8)
    assert again.metrics["energy_kwh"] == thr.metrics["energy_kwh"]


def test_start_from_current_placement_or_let_the_policy_place() -> None:
    packed = np.repeat(np.arange(4), 4)  # 16 VMs on 4 of the 6 hosts
    hist = _history()
    kept = simulate_whatif(_pool(packed), hist, "dvfs")
    assert (kept.active_hosts == 4).all()
    fresh = simulate_whatif(_pool(packed), hist, "dvfs", keep_placement=False)
    free, used = np.full(H, 8.0), set()  # DVFS places by first fit of the full vCPU demand
    for c in _pool().vm_cpu:
        h = int(np.flatnonzero(free >= c)[0])
        free[h] -= c
        used.add(h)
    assert len(used) != 4
    assert (fresh.active_hosts == len(used)).all()
    with pytest.raises(InvalidInputError, match="no host"):
        simulate_whatif(_pool(np.r_[packed[:-1], -1]), hist, "thr-mmt")


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="vm_host"):
        _pool(np.full(V, H))
    with pytest.raises(InvalidInputError, match="fractions"):
        UtilizationHistory(np.full((V, T), 1.5))
    with pytest.raises(InvalidInputError, match="history has"):
        simulate_whatif(_pool(), UtilizationHistory(np.zeros((V - 1, T))), "thr-mmt")
    with pytest.raises(InvalidInputError, match="unknown policy"):
        simulate_whatif(_pool(), _history(), "best-guess")


def test_pool_from_the_store_and_history_file(tmp_path: Path) -> None:
    svc = open_services(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        svc.catalog.create_pool("p")
        for i in range(3):
            svc.hosts.create_host(f"h{i}", {"vcpu": 8, "memory_mib": 16384}, pool="p")
        svc.hosts.create_host("other", {"vcpu": 8, "memory_mib": 16384})  # not in the pool
        svc.catalog.create_flavor("small", {"vcpu": 2, "memory_mib": 2048})
        svc.catalog.create_project("demo")
        for i in range(5):
            svc.workloads.create_workload("demo", f"w{i}", flavor="small", pool="p")
        pool = pool_from_services(svc, "p")
    finally:
        svc.close()
    assert pool.hosts == ("h0", "h1", "h2")
    assert pool.vms == tuple(f"demo/w{i}" for i in range(5))
    assert (pool.vm_cpu == 2).all() and (pool.host_cpu == 8).all()
    assert set(pool.vm_host.tolist()) <= {0, 1, 2}
    # the history file may list VMs in any order; it is aligned on the pool's VMs
    names = np.array(list(reversed(pool.vms)))
    util = np.linspace(0.1, 0.5, 5)[:, None] * np.ones((5, 12))
    np.savez(tmp_path / "h.npz", vms=names, util=util, interval_s=60.0)
    hist = load_history(tmp_path / "h.npz", pool.vms)
    assert hist.interval_s == 60.0
    assert np.allclose(hist.util[:, 0], np.linspace(0.5, 0.1, 5))
    res = simulate_whatif(pool, hist, "lr-mmt")
    assert res.metrics["vms"] == 5 and len(res.time_s) == 11
    with pytest.raises(InvalidInputError, match="no history"):
        load_history(tmp_path / "h.npz", (*pool.vms, "demo/ghost"))


def test_cli_compares_as_is_with_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from poolvisor.cli.errors import run_guarded
    from poolvisor.cli.main import app

    db = tmp_path / "p.db"
    svc = open_services(f"sqlite:///{db}")
    try:
        fill_small_pool(svc)
        vms = pool_from_services(svc, "p").vms
    finally:
        svc.close()
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "h.npz", vms=np.array(vms), util=rng.uniform(0.05, 0.3, (len(vms), 24)))
    argv = ["whatif", "--db", f"sqlite:///{db}", "--pool", "p", "--history", str(tmp_path / "h.npz"),
            "--policies", "thr-mmt,lr-mmt", "--json", "--report", str(tmp_path / "w.html")]
    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: app(argv, standalone_mode=True))
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    runs = json.loads(out.out)
    assert [r["policy"] for r in runs] == ["as-is", "thr-mmt", "lr-mmt"]
    assert runs[0]["migrations"] == 0 and all(r["vms"] == 8 for r in runs)
    assert runs[1]["energy_kwh"] < runs[0]["energy_kwh"]  # light load: consolidation switches hosts off
    assert (tmp_path / "w.html").read_text().count("data:image/png;base64,") >= 3
    # a missing history is one line, exit 1
    argv = ["whatif", "--db", f"sqlite:///{db}", "--history", str(tmp_path / "none.npz")]
    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: app(argv, standalone_mode=True))
    assert e.value.code == 1 and "history file not found" in capsys.readouterr().err
