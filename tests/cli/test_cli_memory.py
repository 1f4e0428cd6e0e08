"""`poolvisor pool memory-*` and `vm reserve-memory` against a real `poolvisor serve`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from test_cli_serve import CLI, Server, clean_env, free_port, one_error_line, run, server  # noqa: F401


def test_memory_commands(run: Callable[..., Any]) -> None:  # noqa: F811
    r = run("pool", "memory-overcommit", "demo", "1.25")
    assert r.returncode == 0 and "memory overcommit 1.25" in r.stdout, r.stderr
    one_error_line(run("pool", "memory-overcommit", "demo", "0"), "ratio")
    assert run("vm", "create", "mem1", "--flavor", "small", "--project", "demo").returncode == 0
    r = run("vm", "reserve-memory", "mem1", "512", "--project", "demo")
    assert r.returncode == 0 and "512" in r.stdout, r.stderr
    one_error_line(run("vm", "reserve-memory", "mem1", "1e9", "--project", "demo"), "cannot reserve")
    r = run("pool", "memory-reclaim", "demo", "--json")
    assert r.returncode == 0 and isinstance(json.loads(r.stdout), list), r.stderr
    r = run("pool", "memory-reclaim", "demo")
    assert r.returncode == 0 and "Balloon round" in r.stdout, r.stderr
    rep = json.loads(run("pool", "memory-report", "demo", "--json").stdout)
    assert rep["memory"]["reserved"] >= 512 and rep["memory_overcommit"]["1.25"] >= 1
    r = run("pool", "memory-report", "demo")
    assert r.returncode == 0 and "Fragmentation" in r.stdout and "largest placeable flavor" in r.stdout
