"""Dry runs and failed requests write nothing: every table is the same before and after.

`POST /v1/workloads?dry_run=true` with an unknown flavor once answered 404 but left a project
'default' and its `project.created` event behind (the route created the project first); a failed
request could likewise leave an empty group's policy changed. Each request below is a dry run or
fails; the whole database (every row of every table, events included) must not change.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from poolvisor.services import Services
from poolvisor.store.rows import Base, GroupRow

BIG = {"vcpu": 1e9}


def snapshot(svc: Services) -> dict[str, list[str]]:
    """Every row of every table, as sortable text."""

    def tx(s: Session) -> dict[str, list[str]]:
        return {t.name: sorted(repr(tuple(r)) for r in s.execute(select(t)).all())
                for t in Base.metadata.sorted_tables}

    return svc.store.run(tx, write=False)


def _setup(client: Any, admin: dict[str, str], svc: Services) -> None:
    svc.workloads.create_workload("demo", "w1", flavor="small", group="aff", group_policy="affinity")
    svc.workloads.create_workload("demo", "e1", flavor="tiny", group="empty", group_policy="anti-affinity")
    svc.workloads.delete_workload("demo", "e1")  # the group 'empty' stays, with no member
    svc.utilization.record_utilization([("demo/w1", 1_700_000_000, 0.5)])
    assert "default" not in {p.name for p in svc.catalog.list_projects()}


def test_dry_runs_and_failed_requests_write_nothing(client: Any, admin: dict[str, str], svc: Services,
                                                    member: Any) -> None:
    _setup(client, admin, svc)
    alice = member("alpha")
    w1_host = svc.workloads.get_workload("demo", "w1").host
    assert w1_host is not None
    tiny3 = [{"name": f"t{i}", "flavor": "tiny"} for i in range(3)]
    dry = {"dry_run": "true"}
    demo = {"project": "demo"}
    wl, batch = "POST /v1/workloads", "POST /v1/workloads/batch"
    x_in = {"name": "x", "flavor": "tiny", "project": "demo"}  # a tiny workload in project demo
    x_big = {"name": "x", "demand": BIG, "project": "demo"}  # one that fits nowhere
    cases: list[tuple[str, str, dict[str, Any] | None, dict[str, str], int, dict[str, str]]] = [
        # (label, "METHOD path", json body, query, expected status, caller)
        ("dry run into the default project", wl, {"name": "x", "flavor": "tiny"}, dry, 200, admin),
        ("dry run, unknown flavor (the repro)", wl, {"name": "x", "flavor": "nope"}, dry, 404, admin),
        ("dry run, new group", wl, {**x_in, "group": "newg", "group_policy": "affinity"}, dry, 200, admin),
        ("dry run, empty group with another policy", wl,
         {**x_in, "group": "empty", "group_policy": "affinity"}, dry, 200, admin),
        ("batch dry run into the default project", batch, {"workloads": tiny3}, dry, 200, admin),
        ("batch dry run, unknown flavor", batch, {"workloads": [{"name": "x", "flavor": "nope"}]}, dry, 404,
         admin),
        ("batch dry run, does not fit", batch, {"workloads": [{"name": "x", "demand": BIG}]}, dry, 409,
         admin),
        ("consolidation plan without apply", "POST /v1/pools/demo/consolidation-plan", {}, {}, 200, admin),
        ("unknown flavor", wl, {"name": "x", "flavor": "nope"}, {}, 404, admin),
        ("no valid host", wl, {"name": "x", "demand": BIG}, {}, 409, admin),
        ("no host with the label", wl, {"name": "x", "flavor": "tiny", "required_labels": {"rack": "none"}},
         {}, 409, admin),
        ("unknown resource", wl, {"name": "x", "demand": {"quantum": 1}}, {}, 422, admin),
        ("unknown pool", wl, {"name": "x", "flavor": "tiny", "pool": "nope"}, {}, 404, admin),
        ("new group, no valid host", wl,
         {**x_big, "group": "newg", "group_policy": "affinity"}, {}, 409, admin),
        ("empty group, another policy, no valid host", wl,
         {**x_big, "group": "empty", "group_policy": "affinity"}, {}, 409, admin),
        ("group with members, another policy", wl,
         {**x_in, "group": "aff", "group_policy": "anti-affinity"}, {}, 409, admin),
        ("duplicate name", wl, {**x_in, "name": "w1"}, {}, 409, admin),
        ("member: unknown flavor", wl, {"name": "x", "flavor": "nope"}, {}, 404, alice),
        ("member: no valid host, new group", wl, {"name": "x", "demand": BIG, "group": "g"}, {}, 409, alice),
        ("batch, does not fit", batch, {"workloads": [*tiny3, {"name": "b", "demand": BIG}]}, {}, 409, admin),
        ("batch, unknown flavor", batch, {"workloads": [{"name": "x", "flavor": "no"}]}, {}, 404, admin),
        ("batch, existing name", batch, {**demo, "workloads": [{"name": "w1", "flavor": "tiny"}]}, {}, 409,
         admin),
        ("batch dry run with a new group", batch,
         {"workloads": [{"name": "x", "flavor": "tiny", "group": "g", "group_policy": "affinity"}]}, dry, 200,
         admin),
        ("batch with a new group, does not fit", batch,
         {"workloads": [{"name": "x", "flavor": "tiny", "group": "g"},
                        {"name": "y", "demand": BIG, "group": "g"}]}, {}, 409, admin),
        ("batch, a group asked for two policies", batch,
         {"workloads": [{"name": "x", "flavor": "tiny", "group": "g", "group_policy": "affinity"},
                        {"name": "y", "flavor": "tiny", "group": "g", "group_policy": "anti-affinity"}]},
         {}, 422, admin),
        ("batch with labels no host has", batch,
         {"workloads": [{"name": "x", "flavor": "tiny", "required_labels": {"rack": "none"}}]}, {}, 409,
         admin),
        ("migrate to an unknown host", "POST /v1/workloads/w1/migrate", {"host": "ghost"}, demo, 404, admin),
        ("migrate to its own host", "POST /v1/workloads/w1/migrate", {"host": w1_host}, demo, 409, admin),
        ("start a running workload", "POST /v1/workloads/w1/start", None, demo, 409, admin),
        ("delete an unknown workload", "DELETE /v1/workloads/ghost", None, demo, 404, admin),
        ("utilization with one unknown workload", "POST /v1/utilization",
         {"samples": [{"workload": "w1", "project": "demo", "time": 6000, "cpu": 0.5},
                      {"workload": "ghost", "project": "demo", "time": 6000, "cpu": 0.5}]}, {}, 404, admin),
        ("duplicate pool", "POST /v1/pools", {"name": "demo"}, {}, 409, admin),
        ("delete a pool with hosts", "DELETE /v1/pools/demo", None, {}, 409, admin),
        ("consolidate an unknown pool", "POST /v1/pools/nope/consolidation-plan", {}, {}, 404, admin),
        ("duplicate host", "POST /v1/hosts", {"name": "demo-000", "capacity": {"vcpu": 1}}, {}, 409, admin),
        ("host in an unknown pool", "POST /v1/hosts", {"name": "h9", "capacity": {"vcpu": 1}, "pool": "no"},
         {}, 404, admin),
        ("delete a host holding workloads", f"DELETE /v1/hosts/{w1_host}", None, {}, 409, admin),
        ("state of an unknown host", "PUT /v1/hosts/ghost/state", {"state": "maintenance"}, {}, 404, admin),
        ("duplicate flavor", "POST /v1/flavors", {"name": "tiny", "demand": {"vcpu": 1}}, {}, 409, admin),
        ("delete an unknown flavor", "DELETE /v1/flavors/ghost", None, {}, 404, admin),
        ("duplicate project", "POST /v1/projects", {"name": "demo"}, {}, 409, admin),
        ("token for an unknown project", "POST /v1/tokens", {"role": "member", "project": "nope"}, {}, 404,
         admin),
        ("member creating a project", "POST /v1/projects", {"name": "mine"}, {}, 403, alice),
    ]
    wrong = []
    for label, route, body, params, status, headers in cases:
        method, path = route.split(" ")
        before = snapshot(svc)
        r = client.request(method, path, json=body, params=params, headers=headers)
        after = snapshot(svc)
        if r.status_code != status:
            wrong.append(f"{label}: expected {status}, got {r.status_code} {r.text[:200]}")
        changed = sorted(t for t in before if before[t] != after[t])
        if changed:
            wrong.append(f"{label}: wrote to {', '.join(changed)}")
    assert not wrong, "\n".join(wrong)
    assert "default" not in {p.name for p in svc.catalog.list_projects()}
    policies = svc.store.run(lambda s: dict(s.execute(select(GroupRow.name, GroupRow.policy)).all()),
                             write=False)
    assert policies == {"aff": "affinity", "empty": "anti-affinity"}


@pytest.mark.parametrize("path", ["/v1/workloads", "/v1/workloads/batch"])
def test_the_default_project_comes_with_the_first_workload(client: Any, admin: dict[str, str],
                                                           svc: Services, path: str) -> None:
    seen = len(svc.events.list_events(limit=1000))
    body = {"name": "x", "flavor": "tiny"}
    r = client.post(path, json=body if path == "/v1/workloads" else {"workloads": [body]}, headers=admin)
    assert r.status_code == 201, r.text
    assert svc.workloads.get_workload("default", "x").state == "running"
    new = svc.events.list_events(limit=1000)[: len(svc.events.list_events(limit=1000)) - seen]
    assert "project.created" in {e.kind for e in new}
    # created by the claim's transaction: its event comes before the placement's
    kinds = [e.kind for e in reversed(new)]
    assert kinds.index("project.created") < kinds.index("workload.placed")
