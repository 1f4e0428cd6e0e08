"""Batch placement and consolidation on heterogeneous pools: never a 500 for valid input.

A 1e8-vCPU host in the pool once let the packer overfill the small hosts and the feasibility
check answer 500 "bin 4 exceeds capacity"; a pool with no host up crashed it with an IndexError.
And whatever the planners do wrong, the service catches it, logs it and plans safely instead.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from taskwait import wait_task

import poolvisor.services.batch as batch_mod
from poolvisor.policies.packing.feasibility import InfeasiblePackingError
from poolvisor.services import Services

TINY = {"vcpu": 1.0, "memory_mib": 512.0, "disk_gib": 1.0, "net_mbps": 10.0}


def _fractional_leftovers(svc: Services) -> None:
    """Leave each demo host (64 vCPU after overcommit) 3.95 + i vCPU: within 0.1 (the old slack of
    1e-9 x a 1e8-vCPU host) of fitting one more 1-vCPU workload."""
    for i in range(len(svc.hosts.list_hosts("demo"))):
        svc.workloads.create_workload("demo", f"odd{i}", demand={"vcpu": 60.05 - i, "memory_mib": 1024})


def _tiny_batch(n: int) -> dict[str, Any]:
    return {"project": "demo", "workloads": [{"name": f"t{i}", "flavor": "tiny"} for i in range(n)]}


def _within_capacity(svc: Services, moves: list[dict[str, Any]]) -> None:
    free = {h.name: h.free for h in svc.hosts.list_hosts()}
    planned: dict[str, dict[str, float]] = {}
    for m in moves:
        if m["to"] is not None:
            for r, v in TINY.items():
                planned.setdefault(m["to"], {}).setdefault(r, 0.0)
                planned[m["to"]][r] += v
    for host, load in planned.items():
        for r, v in load.items():
            assert v <= free[host].get(r, 0.0) + 1e-9, (host, r, v, free[host])


def test_one_large_host_in_the_pool(client: Any, admin: dict[str, str], svc: Services) -> None:
    _fractional_leftovers(svc)
    big = {"name": "big", "pool": "demo", "capacity": {"vcpu": 1e8, "memory_mib": 1e8, "disk_gib": 1e8,
                                                       "net_mbps": 1e8}}
    assert client.post("/v1/hosts", json=big, headers=admin).status_code == 201
    r = client.post("/v1/workloads/batch", params={"dry_run": "true"}, json=_tiny_batch(70), headers=admin)
    assert r.status_code == 200, r.text
    _within_capacity(svc, r.json()["plan"]["moves"])
    r = client.post("/v1/workloads/batch", json={**_tiny_batch(70), "all_or_nothing": False}, headers=admin)
    assert r.status_code == 201, r.text
    assert svc.repair.check().ok


def test_no_host_up_is_a_409_not_a_500(client: Any, admin: dict[str, str]) -> None:
    for h in client.get("/v1/hosts", headers=admin).json():
        r = client.put(f"/v1/hosts/{h['name']}/state", json={"state": "maintenance"}, headers=admin)
        assert r.status_code == 200, r.text
    r = client.post("/v1/workloads/batch", params={"dry_run": "true"}, json=_tiny_batch(3), headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "no_valid_host", r.text


@pytest.mark.parametrize("failure", [InfeasiblePackingError("bin 4 exceeds capacity in dimension 0"),
                                     IndexError("index 0 is out of bounds")])
def test_a_packer_failure_falls_back_to_one_by_one(client: Any, admin: dict[str, str], svc: Services,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture,
                                                    failure: Exception) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise failure

    monkeypatch.setattr(batch_mod, "plan_batch_keeping_scarce", broken)
    with caplog.at_level(logging.ERROR, logger="poolvisor.services"):
        r = client.post("/v1/workloads/batch", json=_tiny_batch(5), headers=admin)
    assert r.status_code == 201, r.text
    plan = r.json()["plan"]
    assert "one by one" in plan["summary"] and any("packer failed" in n for n in plan["notes"])
    assert all(m["reason"] == "placement pipeline (the packer failed here)" for m in plan["moves"])
    assert "batch packer" in caplog.text and ("bin 4 exceeds" in caplog.text or "IndexError" in caplog.text)
    assert len(svc.workloads.list_workloads("demo")) == 5 and svc.repair.check().ok


def test_a_consolidation_failure_proposes_nothing(client: Any, admin: dict[str, str], svc: Services,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    for i in range(3):
        svc.workloads.create_workload("demo", f"w{i}", flavor="small")

    def broken(*_a: Any, **_k: Any) -> Any:
        raise InfeasiblePackingError("plan overfills host 'demo-001'")

    monkeypatch.setattr(batch_mod, "plan_balancing", broken)
    with caplog.at_level(logging.ERROR, logger="poolvisor.services"):
        r = client.post("/v1/pools/demo/consolidation-plan", json={"apply": True}, headers=admin)
        task = wait_task(client, admin, r)
    assert task["state"] == "succeeded", task
    out = task["result"]
    assert out["plan"]["moves"] == [] and out["executed"] == [] and out["hosts_emptied"] == []
    assert out["plan"]["hosts_before"] == out["plan"]["hosts_after"] >= 1
    assert any("planner failed" in n for n in out["plan"]["notes"])
    assert "consolidation planner failed" in caplog.text and "demo-001" in caplog.text


def test_consolidation_with_one_large_host(client: Any, admin: dict[str, str], svc: Services) -> None:
    big = {"name": "big", "pool": "demo", "capacity": {"vcpu": 1e12, "memory_mib": 1e12, "disk_gib": 1e12,
                                                       "net_mbps": 1e12}}
    assert client.post("/v1/hosts", json=big, headers=admin).status_code == 201
    for i, h in enumerate(svc.hosts.list_hosts("demo")[:4]):
        svc.workloads.create_workload("demo", f"w{i}", flavor="small")
        if svc.workloads.get_workload("demo", f"w{i}").host != h.name:
            svc.workloads.migrate_workload("demo", f"w{i}", h.name)
    task = wait_task(client, admin,
                     client.post("/v1/pools/demo/consolidation-plan", json={"apply": True}, headers=admin))
    assert task["state"] == "succeeded" and task["result"]["failed"] == [], task
    assert svc.repair.check().ok
