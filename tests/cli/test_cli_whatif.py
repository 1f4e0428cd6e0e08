"""`poolvisor whatif` on the history recorded in the store (SQLite and PostgreSQL), and the demo's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import app
from poolvisor.cli.whatif import parse_since
from poolvisor.demo.cluster import seed_demo
from poolvisor.demo.usage import demo_utilization, seed_demo_usage
from poolvisor.services import open_services
from poolvisor.sim.whatif import pool_from_services
from small_pool import fill_small_pool

T0 = 1_800_000_000.0


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        run_guarded(lambda: app(argv, standalone_mode=True))
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def _pool(url: str, record: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Pool p of 4 hosts and 8 VMs; the first `record` VMs get 24 samples of 300 s."""
    svc = open_services(url)
    try:
        fill_small_pool(svc)
        vms = pool_from_services(svc, "p").vms
        util = np.random.default_rng(3).uniform(0.05, 0.3, (len(vms), 24))
        if record:
            svc.utilization.record_utilization([(vm, T0 + 300 * k, float(util[i, k]))
                                                for i, vm in enumerate(vms[:record]) for k in range(24)])
    finally:
        svc.close()
    return vms, util


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'p.db'}"
    return str(request.getfixturevalue("pg_url"))


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    return {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in b.items() if k != "wall_s"}


def test_whatif_reads_the_history_from_the_store(url: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    vms, util = _pool(url, record=8)
    base = ["whatif", "--db", url, "--pool", "p", "--policies", "thr-mmt", "--json"]
    code, out, err = _cli(base, capsys)
    assert code == 0, err
    runs = json.loads(out)
    assert [r["policy"] for r in runs] == ["as-is", "thr-mmt"] and all(r["vms"] == 8 for r in runs)
    assert runs[1]["energy_kwh"] < runs[0]["energy_kwh"]
    # exactly what the same history from a file gives
    np.savez(tmp_path / "h.npz", vms=np.array(vms), util=util, interval_s=300.0)
    code, out, err = _cli([*base, "--history", str(tmp_path / "h.npz")], capsys)
    assert code == 0, err
    assert all(_same(a, b) for a, b in zip(json.loads(out), runs, strict=True))
    # --steps: the last 12 steps only; --interval 600 halves the steps
    code, out, err = _cli(["whatif", "--db", url, "--pool", "p", "--steps", "12"], capsys)
    assert code == 0, err
    assert "12 steps of 300 s from 2027-01-15 09:00 UTC" in out
    code, out, err = _cli(["whatif", "--db", url, "--pool", "p", "--interval", "600"], capsys)
    assert code == 0, err
    assert "12 steps of 600 s from 2027-01-15 08:00 UTC" in out


def test_whatif_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    _pool(url, record=5)  # w5..w7 have no samples (replayed at their reservation: next test)
    for argv, msg in [
        (["--steps", "3", "--since", "2h"], "not both"),
        (["--steps", "3", "--history", str(tmp_path / "h.npz")], "not with --history"),
        (["--since", "last tuesday"], "--since"),
        (["--interval", "0"], "interval"),
        (["--pool", "ghost"], "ghost"),
    ]:
        code, out, err = _cli(["whatif", "--db", url, *argv], capsys)
        assert code == 1, (argv, out, err)
        assert err.startswith("poolvisor: error: ") and err.count("\n") == 1 and msg in err, err
    empty = f"sqlite:///{tmp_path / 'e.db'}"
    svc = open_services(empty)
    svc.hosts.create_host("h", {"vcpu": 4, "memory_mib": 4096})
    svc.close()
    code, _, err = _cli(["whatif", "--db", empty], capsys)
    assert code == 1 and "nothing to replay" in err
    none = f"sqlite:///{tmp_path / 'n.db'}"
    _pool(none, record=0)  # VMs, but no history at all
    code, out, err = _cli(["whatif", "--db", none, "--pool", "p"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "no utilization recorded for any of the 8 VM(s) (e.g. demo/w0): nothing to replay" in err


def test_whatif_replays_vms_without_history_at_their_reservation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One VM without samples must not sink the comparison: it replays at 100% of its vCPUs, and
    the output names it (table and --json), from the store and from a --history file alike."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    vms, util = _pool(url, record=5)
    missing = list(vms[5:])
    base = ["whatif", "--db", url, "--pool", "p", "--policies", "thr-mmt,lr-mmt"]
    code, out, err = _cli(base, capsys)
    assert code == 0, err
    assert "thr-mmt" in out and "lr-mmt" in out
    assert (f"note: 3 of 8 VM(s) have no recorded utilization and replay at a constant 100% of the VM's "
            f"vCPU reservation: {', '.join(missing)}") in " ".join(out.split())
    code, out, err = _cli([*base, "--json"], capsys)
    assert code == 0, err
    runs = json.loads(out)
    assert [r["policy"] for r in runs] == ["as-is", "thr-mmt", "lr-mmt"]
    for r in runs:
        assert r["vms"] == 8
        assert r["without_history"] == {"count": 3, "vms": missing,
                                        "replayed_as": "a constant 100% of the VM's vCPU reservation"}
    # exactly the replay of a history where those VMs use their whole reservation all day
    full = util.copy()
    full[5:] = 1.0
    np.savez(tmp_path / "full.npz", vms=np.array(vms), util=full, interval_s=300.0)
    code, out, err = _cli(["whatif", "--db", url, "--pool", "p", "--policies", "thr-mmt,lr-mmt", "--json",
                           "--history", str(tmp_path / "full.npz")], capsys)
    assert code == 0, err
    explicit = json.loads(out)
    assert all(_same({k: v for k, v in a.items() if k != "without_history"},
                     {k: v for k, v in b.items() if k != "without_history"})
               for a, b in zip(explicit, runs, strict=True))
    assert explicit[0]["without_history"]["count"] == 0
    # a --history file that lacks them: the same replay and the same note
    np.savez(tmp_path / "part.npz", vms=np.array(vms[:5]), util=util[:5], interval_s=300.0)
    code, out, err = _cli([*base, "--json", "--history", str(tmp_path / "part.npz")], capsys)
    assert code == 0, err
    assert all(_same(a, b) for a, b in zip(json.loads(out), runs, strict=True))


def test_parse_since() -> None:
    now = datetime(2027, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("1.5d", now) == now - timedelta(hours=36)
    assert parse_since("2027-01-01T00:00", now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_since("2027-01-01T01:00+01:00", now) == datetime(2027, 1, 1, tzinfo=UTC)


def test_demo_records_a_day_that_whatif_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    svc = open_services(url)
    try:
        seed_demo(svc, 6)
        assert seed_demo_usage(svc, 12, now=T0 + 100) == 12
        assert seed_demo_usage(svc, 12) == 0  # once only
        names = tuple(f"demo/{w.name}" for w in svc.workloads.list_workloads("demo"))
        hist = svc.utilization.utilization_history(names, 300)
    finally:
        svc.close()
    assert len(names) == 12 and hist.util.shape == (12, 288)
    assert hist.start_s == T0 - 287 * 300
    assert np.array_equal(hist.util, demo_utilization(12, 288, 0))  # seeded: every demo is the same
    assert 0.05 < hist.util.mean() < 0.6 and hist.util.std() > 0.05
    code, out, err = _cli(["whatif", "--db", url, "--pool", "demo", "--json"], capsys)
    assert code == 0, err
    assert [r["vms"] for r in json.loads(out)] == [12, 12]
