"""Batch placement and consolidation planning through the API."""

from __future__ import annotations

from typing import Any

from taskwait import wait_task

from poolvisor.services import Services


def test_batch_create_dry_run_and_all_or_nothing(client: Any, admin: dict[str, str], svc: Services) -> None:
    body = {"project": "demo", "workloads": [{"name": f"web{i}", "flavor": "small"} for i in range(5)]}
    r = client.post("/v1/workloads/batch", params={"dry_run": "true"}, json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert {w["state"] for w in r.json()["workloads"]} == {"dry-run"}
    assert svc.workloads.list_workloads("demo") == []
    r = client.post("/v1/workloads/batch", json=body, headers=admin)
    assert r.status_code == 201, r.text
    out = r.json()
    assert len(out["workloads"]) == 5 and out["unplaced"] == []
    assert out["plan"]["kind"] == "batch-placement" and out["plan"]["moves"][0]["from"] is None
    assert all(w["explanation"]["rule"].startswith("batch placement") for w in out["workloads"])
    got = client.get("/v1/workloads/web0", params={"project": "demo"}, headers=admin)
    assert got.status_code == 200, got.text
    huge = {"project": "demo", "workloads": [{"name": f"big{i}", "demand": {"vcpu": 1e6}} for i in range(2)]}
    r = client.post("/v1/workloads/batch", json=huge, headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "no_valid_host", r.text
    assert len(svc.workloads.list_workloads("demo")) == 5
    assert client.post("/v1/workloads/batch", json={"workloads": [{"name": "x", "flavor": "small",
                                                                   "zone": "z"}]},
                       headers=admin).status_code == 422  # an unknown field (groups: test_api_batch_gang)
    assert svc.repair.check().ok


def test_consolidation_plan_admin_only_and_apply(client: Any, admin: dict[str, str], svc: Services,
                                                 member: Any) -> None:
    for i in range(4):  # spread one small workload per host
        w = svc.workloads.create_workload("demo", f"w{i}", flavor="small")
        target = svc.hosts.list_hosts()[i].name
        if w.host != target:
            svc.workloads.migrate_workload("demo", f"w{i}", target)
    url = "/v1/pools/demo/consolidation-plan"
    assert client.post(url, headers=member("demo")).status_code == 403
    assert client.post("/v1/pools/nope/consolidation-plan", headers=admin).status_code == 404
    r = client.post(url, headers=admin)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["plan"]["hosts_before"] == 4 and plan["plan"]["hosts_after"] < 4 and plan["hosts_emptied"]
    assert not plan["applied"] and sum(1 for h in svc.hosts.list_hosts() if h.workloads) == 4
    task = wait_task(client, admin, client.post(url, json={"apply": True}, headers=admin))
    assert task["kind"] == "consolidate" and task["state"] == "succeeded", task
    assert task["result"]["failed"] == [] and task["result"]["applied"], task
    assert len(task["result"]["executed"]) == len(task["result"]["plan"]["moves"]) > 0
    assert sum(1 for h in svc.hosts.list_hosts() if h.workloads) == plan["plan"]["hosts_after"]
    assert svc.repair.check().ok
