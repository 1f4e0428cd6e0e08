"""`poolvisor bench migrate`: one line and exit 1 where the lab cannot run; the real figures on a
machine that can (real: root, libvirt, QEMU)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from poolvisor.cli.bench import app
from poolvisor.lab import lab_available
from realenv import require_real


def test_unavailable_lab_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("libvirt")
    import poolvisor.bench.migrate as bm

    monkeypatch.setattr(bm, "lab_available", lambda: (False, "lab hosts need root"))
    res = CliRunner().invoke(app, ["migrate", "--migrations", "1"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == ["poolvisor: error: bench migrate: lab hosts need root"]


def test_rejects_bad_options() -> None:
    assert CliRunner().invoke(app, ["migrate", "--migrations", "0"]).exit_code != 0
    assert CliRunner().invoke(app, ["migrate", "--memory-mib", "64"]).exit_code != 0


@pytest.mark.real
def test_one_round_for_real() -> None:
    ok, why = lab_available()
    require_real(ok, why)
    res = CliRunner().invoke(app, ["migrate", "--migrations", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["migrations"] == 2 and out["virsh_migrations"] == 2
    assert out["lost_guests"] == 0 and out["failed"] == 0 and out["counter_skips"] == 0
    assert 0 < out["median_total_s"] < 60 and out["median_downtime_ms"] is not None
