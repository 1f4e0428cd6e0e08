"""`poolvisor check` against a sound and a deliberately corrupted database."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import text
from svc_helpers import small_cluster
from typer.testing import CliRunner

from poolvisor.cli.main import app
from poolvisor.services import open_services


def run_check(*args: str):
    return CliRunner().invoke(app, ["check", *args])


@pytest.fixture
def populated(sqlite_url):
    s = open_services(sqlite_url)
    small_cluster(s)
    for i in range(4):
        s.workloads.create_workload("demo", f"vm{i}", flavor="unit", group="g",
                                    group_policy="soft-anti-affinity")
    s.close()
    return sqlite_url


def corrupt(url: str, *statements: str) -> None:
    s = open_services(url, repair=False)
    with s.store.engine.begin() as c:
        for st in statements:
            c.execute(text(st))
    s.close()


def test_sound_database_passes(populated):
    r = run_check("--db", populated)
    assert r.exit_code == 0, r.output
    assert "every invariant holds" in r.output
    data = json.loads(run_check("--db", populated, "--json").output)
    assert data["ok"] is True and data["counts"]["workloads"] == 4


@pytest.mark.parametrize("statements,expected", [
    (["UPDATE host_resources SET allocated = allocated + 1 WHERE resource = 'vcpu' AND host_id = "
      "(SELECT host_id FROM allocations LIMIT 1)"], "allocations sum to"),
    (["UPDATE host_resources SET allocated = 100 WHERE resource = 'vcpu'",
      "UPDATE allocations SET amount = 100 WHERE resource = 'vcpu'"], "exceeds capacity"),
    (["INSERT INTO allocations (workload_id, host_id, resource, amount) SELECT a.workload_id, "
      "(SELECT id FROM hosts WHERE id <> a.host_id LIMIT 1), 'gpu', 0 FROM allocations a LIMIT 1"],
     "holds allocations on 2 hosts"),
    (["UPDATE hosts SET state = 'down' WHERE id = (SELECT host_id FROM allocations LIMIT 1)"],
     "is down but holds allocations"),
    (["UPDATE hosts SET workloads = workloads + 3 WHERE id = 1"], "records"),
    (["UPDATE workloads SET state = 'lost' WHERE id = (SELECT min(id) FROM workloads)"],
     "is lost but still holds allocations"),
])
def test_corruption_is_reported(populated, statements, expected):
    corrupt(populated, *statements)
    r = run_check("--db", populated)
    assert r.exit_code == 1
    assert expected in r.output.replace("\n", " ") or expected in " ".join(r.output.split())
    data = json.loads(run_check("--db", populated, "--json").output)
    assert data["ok"] is False and any(expected in v for v in data["violations"])


def test_missing_database_is_one_clear_error(tmp_path):
    r = run_check("--db", str(tmp_path / "nope.db"))
    assert r.exit_code == 1 and "no database at" in r.output


LEASE_S = 3.0


@pytest.mark.parametrize("op", ["create", "delete", "migrate"])
def test_workloads_stuck_past_their_lease_are_reported(sqlite_url, op):
    """A use case whose process died: in flight (ok) while its lease runs, a violation after."""
    s = open_services(sqlite_url, lease_s=LEASE_S)  # long enough that a loaded machine checks in time
    small_cluster(s)
    s.workloads.create_workload("demo", "vm0", flavor="unit")

    def die(*_a, **_k):
        raise KeyboardInterrupt  # the thread dies; nothing in the use case catches it

    setattr(s.driver, {"migrate": "start_migration"}.get(op, op), die)
    with pytest.raises(KeyboardInterrupt):
        {"create": lambda: s.workloads.create_workload("demo", "vm1", flavor="unit"),
         "delete": lambda: s.workloads.delete_workload("demo", "vm0"),
         "migrate": lambda: s.workloads.migrate_workload("demo", "vm0")}[op]()
    s.close()
    state = {"create": "placing", "delete": "deleting", "migrate": "migrating"}[op]
    r = run_check("--db", sqlite_url, "--json")
    data = json.loads(r.output)
    assert r.exit_code == 0 and data["counts"]["in_flight"] == 1, r.output
    time.sleep(LEASE_S + 0.1)
    r = run_check("--db", sqlite_url)
    assert r.exit_code == 1 and f"stuck {state}" in " ".join(r.output.split()), r.output
    data = json.loads(run_check("--db", sqlite_url, "--json").output)
    [v] = data["violations"]
    name = "vm1" if op == "create" else "vm0"
    assert v.startswith(f"workload demo/{name} is stuck {state}: its lease") and "expired" in v
    s = open_services(sqlite_url)  # a start repairs it; then check is clean
    s.close()
    assert run_check("--db", sqlite_url).exit_code == 0
