"""`poolvisor storage-pool|volume` against a real `poolvisor serve` (the server of test_cli_serve)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from test_cli_serve import CLI, Server, clean_env, free_port, one_error_line, run, server  # noqa: F401

from poolvisor.cli.storage import size_mib


def test_storage_pool_devices_volumes_and_rebalance(run: Callable[..., Any]) -> None:  # noqa: F811
    r = run("storage-pool", "create", "fast", "--replicas", "2", "--segment", "1G")
    assert r.returncode == 0 and "2 replicas" in r.stdout, r.stderr
    for i in range(3):
        r = run("storage-pool", "device", "add", "fast", f"d{i}", "100G", "--domain", f"r{i}")
        assert r.returncode == 0, r.stderr
    r = run("volume", "create", "data", "fast", "20G", "--thick", "--project", "demo")
    assert r.returncode == 0 and "20.0 GiB thick" in r.stdout, r.stderr
    one_error_line(run("volume", "create", "big", "fast", "200G", "--thick", "--project", "demo"),
                   "over-subscription limit")
    assert run("vm", "create", "web", "--flavor", "small", "--project", "demo").returncode == 0
    r = run("volume", "attach", "data", "web", "--project", "demo")
    assert r.returncode == 0 and "attached to web" in r.stdout, r.stderr
    one_error_line(run("volume", "delete", "data", "--project", "demo"), "detach it first")
    r = run("volume", "resize", "data", "25G", "--project", "demo")
    assert r.returncode == 0 and "25.0 GiB" in r.stdout, r.stderr
    r = run("volume", "snapshot", "data", "data-snap", "--project", "demo")
    assert r.returncode == 0, r.stderr
    assert "snapshot demo/data-snap of data taken (25.0 GiB allocated)" in r.stdout
    one_error_line(run("volume", "resize", "data-snap", "30G", "--project", "demo"), "read-only")
    assert run("volume", "delete", "data-snap", "--project", "demo").returncode == 0
    assert run("storage-pool", "device", "fail", "fast", "d0").returncode == 0
    r = run("storage-pool", "rebalance", "fast", "--dry-run", "--json")
    plan = json.loads(r.stdout)
    assert plan["copies"] > 0 and plan["lost"] == 0
    r = run("storage-pool", "rebalance", "fast", "--dry-run")
    assert r.returncode == 0 and "replica copies" in r.stdout and "First moves" in r.stdout
    r = run("storage-pool", "rebalance", "fast", "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    assert t["state"] == "succeeded" and t["result"]["copies"] == plan["copies"]
    v = json.loads(run("volume", "show", "data", "--project", "demo", "--json").stdout)
    assert v["live_replicas"] == 2 and set(v["devices"]) == {"d1", "d2"}
    r = run("storage-pool", "show", "fast")
    assert r.returncode == 0 and "under-replicated segments" in r.stdout
    r = run("volume", "list", "--project", "demo")
    assert r.returncode == 0 and "Volumes" in r.stdout, r.stderr
    vols = json.loads(run("volume", "list", "--project", "demo", "--json").stdout)
    assert [(v["name"], v["state"], v["attached_to"]) for v in vols] == [("data", "attached", "web")]
    assert run("volume", "detach", "data", "--project", "demo").returncode == 0
    assert run("volume", "delete", "data", "--project", "demo").returncode == 0
    assert run("storage-pool", "device", "delete", "fast", "d0").returncode == 0
    assert run("storage-pool", "delete", "fast").returncode == 0
    one_error_line(run("storage-pool", "show", "fast"), "not found")


def test_size_parser() -> None:
    assert (size_mib("512"), size_mib("512M"), size_mib("20G"), size_mib("1.5T"), size_mib("2GiB")) == (
        512, 512, 20480, 1572864, 2048)
    for bad in ("0", "1.5", "x", "10Q", "nan", "-1G", ""):
        with pytest.raises(ValueError):
            size_mib(bad)


def test_bad_size_is_one_line(run: Callable[..., Any]) -> None:  # noqa: F811
    r = run("volume", "create", "x", "fast", "10Q")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "10Q" in r.stderr


def test_dir_devices_and_scrub(run: Callable[..., Any], tmp_path: Any) -> None:  # noqa: F811
    assert run("storage-pool", "create", "bytes", "--replicas", "2", "--segment", "4M").returncode == 0
    for i in range(2):
        r = run("storage-pool", "device", "add", "bytes", f"b{i}", "1G", "--domain", f"r{i}",
                "--path", str(tmp_path / f"b{i}"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"b{i}" / "objects").is_dir()
    one_error_line(run("storage-pool", "device", "add", "bytes", "nodir", "1G"), "give this one a path")
    r = run("storage-pool", "scrub", "bytes", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"pool": "bytes", "chunks": 0, "repaired": 0,
                                                          "repaired_bytes": 0, "lost": 0, "garbage_files": 0,
                                                          "garbage_bytes": 0}, r.stderr
    r = run("storage-pool", "scrub", "bytes")
    assert r.returncode == 0 and "0 chunks verified" in r.stdout, r.stderr
    one_error_line(run("storage-pool", "scrub", "ghost"), "not found")


def test_volume_migrate(run: Callable[..., Any]) -> None:  # noqa: F811
    for pool in ("mig-a", "mig-b"):
        assert run("storage-pool", "create", pool, "--replicas", "2", "--segment", "1G").returncode == 0
        for i in range(2):
            r = run("storage-pool", "device", "add", pool, f"{pool}-{i}", "100G", "--domain", f"r{i}")
            assert r.returncode == 0, r.stderr
    assert run("volume", "create", "mv", "mig-a", "3G", "--thick", "--project", "demo").returncode == 0
    r = run("volume", "migrate", "mv", "--pool", "mig-b", "--project", "demo")
    assert r.returncode == 0 and "migrated mig-a -> mig-b: 3 segments" in r.stdout, r.stderr
    v = json.loads(run("volume", "show", "mv", "--project", "demo", "--json").stdout)
    assert v["pool"] == "mig-b" and set(v["devices"]) == {"mig-b-0", "mig-b-1"}
    one_error_line(run("volume", "migrate", "mv", "--pool", "mig-b", "--project", "demo"), "already in")
    one_error_line(run("volume", "migrate", "mv", "--pool", "ghost", "--project", "demo"), "not found")


def test_storage_group_spelling(run: Callable[..., Any]) -> None:  # noqa: F811
    """The issue's spelling, `storage pool|device|rebalance`, runs the same commands as
    `storage-pool`: a failed device's replicas are planned, then re-replicated by the task."""
    assert run("storage", "pool", "create", "alt", "--replicas", "2", "--segment", "1G").returncode == 0
    for i in range(3):
        assert run("storage", "device", "add", "alt", f"a{i}", "100G", "--domain", f"r{i}").returncode == 0
    assert run("volume", "create", "blob", "alt", "10G", "--thick", "--project", "demo").returncode == 0
    assert run("storage", "device", "fail", "alt", "a0").returncode == 0
    plan = json.loads(run("storage", "rebalance", "alt", "--dry-run", "--json").stdout)
    assert plan["copies"] > 0 and plan["lost"] == 0
    t = json.loads(run("storage", "rebalance", "alt", "--json").stdout)
    assert t["state"] == "succeeded" and t["result"]["copies"] == plan["copies"]
    pools = json.loads(run("storage", "pool", "list", "--json").stdout)
    assert "alt" in [p["name"] for p in pools]
    r = run("storage", "device", "add", "alt", "a9", "lots")
    assert r.returncode != 0 and "Traceback" not in r.stderr and "lots" in r.stderr
    assert run("volume", "delete", "blob", "--project", "demo").returncode == 0
