"""Tasks over HTTP: long operations answer 202 with a task; GET /v1/tasks polls it to completion,
scoped to the caller's project like workloads."""

from __future__ import annotations

from typing import Any

from taskwait import wait_task

from poolvisor.services import Services


def test_migrate_answers_202_and_the_task_completes(client: Any, admin: dict[str, str],
                                                    svc: Services) -> None:
    w = svc.workloads.create_workload("demo", "vm1", flavor="small")
    r = client.post("/v1/workloads/vm1/migrate", params={"project": "demo"}, headers=admin)
    assert r.status_code == 202 and r.json()["state"] in ("queued", "running", "succeeded"), r.text
    assert r.json()["kind"] == "migrate" and r.json()["subject"] == "workload/demo/vm1"
    task = wait_task(client, admin, r)
    assert task["state"] == "succeeded" and task["progress"] == 1 and task["error"] is None, task
    assert task["result"]["from"] == w.host
    assert task["result"]["to"] == svc.workloads.get_workload("demo", "vm1").host
    assert [e["message"] for e in task["entries"]][0] == "migrate queued" and task["finished_at"]
    listed = client.get("/v1/tasks", params={"state": "succeeded"}, headers=admin).json()
    assert [t["id"] for t in listed] == [task["id"]]
    assert client.get("/v1/tasks", params={"state": "running"}, headers=admin).json() == []
    assert svc.repair.check().ok


def test_placement_failure_ends_the_task_failed(client: Any, admin: dict[str, str], svc: Services) -> None:
    svc.workloads.create_workload("demo", "vm1", flavor="small")
    for h in svc.hosts.list_hosts():
        if h.name != svc.workloads.get_workload("demo", "vm1").host:
            svc.hosts.set_host_state(h.name, "maintenance")
    task = wait_task(client, admin, client.post("/v1/workloads/vm1/migrate", params={"project": "demo"},
                                                headers=admin))
    assert task["state"] == "failed" and task["error"], task
    assert svc.workloads.get_workload("demo", "vm1").state == "running" and svc.repair.check().ok


def test_tasks_are_project_scoped(client: Any, admin: dict[str, str], svc: Services, member: Any) -> None:
    svc.workloads.create_workload("demo", "vm1", flavor="small")
    task = wait_task(client, admin, client.post("/v1/workloads/vm1/migrate", params={"project": "demo"},
                                                headers=admin))
    cons = wait_task(client, admin, client.post("/v1/pools/demo/consolidation-plan", json={"apply": True},
                                                headers=admin))
    assert cons["kind"] == "consolidate" and cons["project"] is None and cons["state"] == "succeeded"
    demo, other = member("demo"), member("other")
    assert client.get(f"/v1/tasks/{task['id']}", headers=demo).status_code == 200
    assert client.get(f"/v1/tasks/{task['id']}", headers=other).status_code == 404
    assert client.get(f"/v1/tasks/{cons['id']}", headers=demo).status_code == 404  # pool-wide: admins
    assert {t["id"] for t in client.get("/v1/tasks", headers=demo).json()} == {task["id"]}
    assert client.get("/v1/tasks", headers=other).json() == []
    assert client.get("/v1/tasks", params={"project": "demo"}, headers=other).status_code == 404
    assert {t["id"] for t in client.get("/v1/tasks", headers=admin).json()} >= {task["id"], cons["id"]}


def test_task_inputs_are_checked(client: Any, admin: dict[str, str]) -> None:
    assert client.get("/v1/tasks/999", headers=admin).status_code == 404
    for bad in ("0", "-1", "x", "1.5", "9223372036854775808"):
        assert client.get(f"/v1/tasks/{bad}", headers=admin).status_code == 422, bad
    assert client.get("/v1/tasks", params={"state": "done"}, headers=admin).status_code == 422
    assert client.get("/v1/tasks", params={"limit": "0"}, headers=admin).status_code == 422
    assert client.get("/v1/tasks").status_code == 401
