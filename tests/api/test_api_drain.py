"""Host drain over HTTP: POST /v1/hosts/{name}/drain answers 202 with a drain task (admins only),
the task empties the host and puts it in maintenance; /undrain returns it; refusals are 4xx."""

from __future__ import annotations

from typing import Any

from taskwait import wait_task

from poolvisor.services import Services


def test_drain_and_undrain(client: Any, admin: dict[str, str], svc: Services, member: Any) -> None:
    for i in range(3):
        svc.workloads.create_workload("demo", f"vm{i}", flavor="small")
    host = svc.workloads.get_workload("demo", "vm0").host
    assert host is not None
    assert client.post(f"/v1/hosts/{host}/drain", headers=member("demo")).status_code == 403
    r = client.post(f"/v1/hosts/{host}/drain", headers=admin)
    assert r.status_code == 202 and r.json()["kind"] == "drain" and r.json()["subject"] == f"host/{host}"
    task = wait_task(client, admin, r)
    assert task["state"] == "succeeded" and task["progress"] == 1
    assert task["result"]["host_state"] == "maintenance"
    assert task["result"]["stuck"] == [] and "demo/vm0" in task["result"]["moved"]
    got = client.get(f"/v1/hosts/{host}", headers=admin).json()
    assert got["state"] == "maintenance" and got["workloads"] == 0
    assert client.post(f"/v1/hosts/{host}/undrain", headers=member("demo")).status_code == 403
    back = client.post(f"/v1/hosts/{host}/undrain", headers=admin)
    assert back.status_code == 200 and back.json()["state"] == "up"
    again = client.post(f"/v1/hosts/{host}/undrain", headers=admin)
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert client.post("/v1/hosts/nope/drain", headers=admin).status_code == 404
    bad = client.put(f"/v1/hosts/{host}/state", json={"state": "draining"}, headers=admin)
    assert bad.status_code == 422
    assert svc.repair.check().ok
