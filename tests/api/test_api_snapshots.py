"""Snapshots over HTTP: take and restore answer 202 with a task, list and delete at once."""

from __future__ import annotations

from typing import Any

from taskwait import wait_task

from poolvisor.services import Services


def test_snapshot_lifecycle_over_http(client: Any, admin: dict[str, str], svc: Services, member: Any) -> None:
    svc.workloads.create_workload("demo", "vm1", flavor="small")
    q = {"project": "demo"}
    r = client.post("/v1/workloads/vm1/snapshots", params=q, json={"name": "s1"}, headers=admin)
    assert r.status_code == 202 and r.json()["kind"] == "snapshot", r.text
    t = wait_task(client, admin, r)
    assert t["state"] == "succeeded" and t["result"]["snapshot"] == "s1", t
    snaps = client.get("/v1/workloads/vm1/snapshots", params=q, headers=admin).json()
    assert [(s["name"], s["state"], s["workload_state"]) for s in snaps] == [("s1", "ready", "running")]
    assert snaps[0]["size_bytes"] == 2048 << 20

    assert client.post("/v1/workloads/vm1/stop", params=q, headers=admin).status_code == 200
    r = client.post("/v1/workloads/vm1/snapshots/s1/restore", params=q, headers=admin)
    t = wait_task(client, admin, r)
    assert t["state"] == "succeeded" and t["kind"] == "restore", t
    assert client.get("/v1/workloads/vm1", params=q, headers=admin).json()["state"] == "running"

    r = client.post("/v1/workloads/vm1/snapshots", params=q, json={"name": "s1"}, headers=admin)
    assert r.status_code == 409 and "already has" in r.json()["message"]
    r = client.post("/v1/workloads/vm1/snapshots", params=q, json={"name": "bad name"}, headers=admin)
    assert r.status_code == 422
    assert client.post("/v1/workloads/nope/snapshots", params=q, json={"name": "x"},
                       headers=admin).status_code == 404
    assert client.post("/v1/workloads/vm1/snapshots/nope/restore", params=q, headers=admin).status_code == 404
    other = member("team-x")  # another project's member does not see the workload
    assert client.get("/v1/workloads/vm1/snapshots", params=q, headers=other).status_code == 404
    assert client.delete("/v1/workloads/vm1/snapshots/s1", params=q, headers=admin).status_code == 204
    assert client.get("/v1/workloads/vm1/snapshots", params=q, headers=admin).json() == []
    assert client.delete("/v1/workloads/vm1/snapshots/s1", params=q, headers=admin).status_code == 404
    assert svc.repair.check().ok
