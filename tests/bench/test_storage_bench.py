"""`poolvisor bench storage --json`: the figures exist and the data-path invariants hold (small run)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from poolvisor.bench.storage import device_kill, movement, service_device_kill, service_rebalance
from poolvisor.cli.bench import app


def test_movement_near_ideal_small() -> None:
    m = movement(objects=20_000, devices=24, domains=8)
    assert 0.8 < m["join_moved_over_ideal"] < 1.2 and 0.8 < m["leave_moved_over_ideal"] < 1.2


def test_device_kill_small(tmp_path: Path) -> None:
    r = device_kill(tmp_path, chunks=32, writes=90, chunk=4096)
    assert r["acked_lost"] == 0 and r["under_replicated_after"] == 0 and r["acked_bytes"] > 0


def test_service_device_kill_small(tmp_path: Path) -> None:
    """Through VolumeService: a device renamed away mid-stream is found failed, no acknowledged
    write is lost, and the rebalance restores every replica."""
    r = service_device_kill(tmp_path, writes=40, io=64 * 1024, volume_mib=16)
    assert r["acked_lost"] == 0 and r["acked_bytes"] > 0
    assert r["devices_failed"] == 1 and r["rereplicated_copies"] > 0 and r["under_replicated_after"] == 0


def test_cli_json(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["storage", "--json", "--size-mib", "1", "--rounds", "1",
                                   "--tmp", str(tmp_path), "--volume-gib", "4"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for k in ("moved_over_ideal", "write_mb_s", "read_mb_s", "raw_write_mb_s", "acked_lost",
              "write_over_raw_third", "io_mib", "service_join_moved_over_ideal", "service_lost",
              "raw_object_write_mb_s", "write_over_raw_object_third", "object_mib",
              "dirstore_write_mb_s", "dirstore_read_mb_s", "dirstore_acked_lost", "split_write_mb_s",
              "split_read_mb_s", "split_write_over_raw_third"):
        assert k in out
    assert out["acked_lost"] == 0 and out["dirstore_acked_lost"] == 0
    assert out["object_mib"] == 4  # a new pool's default object size
    assert list(tmp_path.iterdir()) == []  # temporary devices removed


def test_service_rebalance_small(tmp_path: Path) -> None:
    r = service_rebalance(tmp_path, volume_gib=8)
    assert r["service_replicas_total"] == 8 * 32 * 3
    assert 0.5 < r["service_join_moved_over_ideal"] < 1.5
    assert 0.5 < r["service_leave_moved_over_ideal"] < 1.5
    assert r["service_lost"] == 0 and r["service_under_replicated_after"] == 0
    assert r["service_rereplicated"] > 0


def test_cli_rejects_bad_size() -> None:
    res = CliRunner().invoke(app, ["storage", "--size-mib", "0"])
    assert res.exit_code != 0
