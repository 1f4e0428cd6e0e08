"""POST /v1/workloads/batch with labels and groups: a gang placed by the placement filters."""

from __future__ import annotations

from typing import Any


def test_batch_with_labels_and_affinity(client: Any, admin: dict[str, str], svc: Any) -> None:
    gpu_hosts = {h.name for h in svc.hosts.list_hosts() if h.labels.get("gpu") == "true"}
    body = {"project": "demo", "workloads": [
        {"name": f"web{i}", "flavor": "small", "group": "web", "group_policy": "affinity",
         "forbidden_labels": {"gpu": "true"}} for i in range(3)] + [
        {"name": f"db{i}", "flavor": "small", "group": "db", "group_policy": "anti-affinity"}
        for i in range(3)]}
    r = client.post("/v1/workloads/batch", json=body, headers=admin)
    assert r.status_code == 201, r.text
    out = {w["name"]: w for w in r.json()["workloads"]}
    web = {out[f"web{i}"]["host"] for i in range(3)}
    assert len(web) == 1 and not web & gpu_hosts
    assert len({out[f"db{i}"]["host"] for i in range(3)}) == 3
    assert out["web0"]["group"] == "web"
    assert all(w["explanation"]["rule"].startswith("batch placement") for w in out.values())
    r = client.post("/v1/workloads/batch", json={"project": "demo", "workloads": [
        {"name": "x", "flavor": "small", "required_labels": {"gpu": "maybe"}}]}, headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "no_valid_host", r.text
    r = client.post("/v1/workloads/batch", json={"project": "demo", "workloads": [
        {"name": "x", "flavor": "small", "group_policy": "affinity"}]}, headers=admin)
    assert r.status_code == 422
    assert svc.repair.check().ok
