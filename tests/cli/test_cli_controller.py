"""`poolvisor controller status|pause|resume` against a real `poolvisor serve`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from test_cli_serve import CLI, Server, clean_env, free_port, run, server  # noqa: F401


def test_controller_commands(run: Callable[..., Any]) -> None:  # noqa: F811
    r = run("controller", "status")
    assert r.returncode == 0 and "running" in r.stdout and "--controller-interval 0" in r.stdout, r.stderr
    r = run("controller", "pause")
    assert r.returncode == 0 and "paused" in r.stdout, r.stderr
    st = json.loads(run("controller", "status", "--json").stdout)
    assert st["paused"] is True and st["loop"] is None
    r = run("controller", "resume", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["paused"] is False, r.stderr
