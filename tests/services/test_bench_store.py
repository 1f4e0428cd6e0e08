"""`poolvisor bench store`: creates through the services layer and reports the invariant check."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from poolvisor.cli.main import app


def test_bench_store_json(sqlite_url):
    r = CliRunner().invoke(app, ["bench", "store", "--db", sqlite_url, "--hosts", "2", "--requests", "12",
                                 "--threads", "3", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["acked"] == 12 and res["errors"] == 0 and res["invariants_ok"] is True
    # the database is not empty any more: one clear error, no traceback
    r = CliRunner().invoke(app, ["bench", "store", "--db", sqlite_url, "--json"])
    assert r.exit_code != 0 and "empty database" in str(r.exception or r.output)
