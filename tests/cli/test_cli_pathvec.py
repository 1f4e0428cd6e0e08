"""`poolvisor router create --protocol path-vector`, `router pref` and `route list|lookup` with AS
paths, against a real `poolvisor serve` (the module's server from test_cli_serve)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from test_cli_serve import CLI, Server, clean_env, free_port, one_error_line, run, server  # noqa: F401


def test_path_vector_commands(run: Callable[..., Any]) -> None:  # noqa: F811
    p = ("--project", "cli-pv")
    assert run("project", "create", "cli-pv").returncode == 0
    for name, cidr in (("lan1", "10.71.0.0/24"), ("lan2", "10.72.0.0/24"), ("lan3", "10.73.0.0/24"),
                       ("l12", "10.70.12.0/29"), ("l23", "10.70.23.0/29"), ("l13", "10.70.13.0/29")):
        assert run("network", "create", name, cidr, *p).returncode == 0
    for r, links in (("r1", ("lan1", "l12", "l13")), ("r2", ("lan2", "l12", "l23")),
                     ("r3", ("lan3", "l23", "l13"))):
        extra = ("--asn", "65001") if r == "r1" else ()
        out = run("router", "create", r, "--protocol", "path-vector", *extra, *p)
        assert out.returncode == 0 and "path-vector, AS " in out.stdout, out.stdout + out.stderr
        for net in links:
            assert run("router", "attach", r, net, *p).returncode == 0
    out = run("route", "list", "r1", *p)
    assert out.returncode == 0 and "AS path 64512" in " ".join(out.stdout.split()), out.stdout
    assert "path-vector rounds" in out.stdout
    out = run("router", "pref", "r1", "r3", "300", *p)
    assert out.returncode == 0 and "local preference 300" in out.stdout, out.stdout + out.stderr
    out = run("route", "lookup", "r1", "10.72.0.5", *p)
    assert out.returncode == 0 and "AS path 64513 64512" in " ".join(out.stdout.split()), out.stdout
    show = run("router", "show", "r1", *p)
    assert "AS 65001; local preference: r3=300" in show.stdout, show.stdout
    got = json.loads(run("router", "pref", "r1", "r3", "--clear", "--json", *p).stdout)
    assert got["local_pref"] == {} and got["asn"] == 65001
    one_error_line(run("router", "pref", "r1", "r3", *p), "a preference or --clear")
    one_error_line(run("router", "create", "r4", "--protocol", "path-vector", "--asn", "65001", *p),
                   "AS number 65001 is taken")
    one_error_line(run("router", "pref", "r1", "nope", "5", *p), "router 'nope' not found")
