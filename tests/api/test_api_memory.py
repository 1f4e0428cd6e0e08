"""The memory pool API: overcommit, reservations, a balloon round on the sim driver, the report."""

from __future__ import annotations

from typing import Any

from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services


def test_memory_overcommit_reservation_reclaim_and_report(client: Any, admin: dict[str, str], svc: Services,
                                                        member: Any) -> None:
    r = client.put("/v1/pools/demo/memory-overcommit", json={"ratio": 1.5}, headers=admin)
    assert r.status_code == 200 and len(r.json()["changed"]) == 6, r.text
    assert all(h["overcommit"]["memory_mib"] == 1.5 for h in client.get("/v1/hosts", headers=admin).json())
    assert client.put("/v1/pools/demo/memory-overcommit", json={"ratio": 0}, headers=admin).status_code == 422
    a = member("demo")
    assert client.put("/v1/pools/demo/memory-overcommit", json={"ratio": 2}, headers=a).status_code == 403
    r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "project": "demo"}, headers=admin)
    assert r.status_code == 201, r.text
    demand = r.json()["demand"]["memory_mib"]
    r = client.put("/v1/workloads/w/memory-reservation", json={"mib": demand + 1}, headers=a)
    assert r.status_code == 409
    r = client.put("/v1/workloads/w/memory-reservation", json={"mib": demand / 2}, headers=a)
    assert r.status_code == 200
    assert r.json() == {"project": "demo", "workload": "w", "reserved_mib": demand / 2}
    assert isinstance(svc.driver, SimDriver)
    r = client.post("/v1/pools/demo/memory-reclaim", headers=admin)
    assert r.status_code == 200, r.text
    assert all(h["reclaimed_mib"] == 0 for h in r.json())  # one small guest: no pressure anywhere
    r = client.post("/v1/pools/demo/memory-reclaim", json={"threshold": 1.5}, headers=admin)
    assert r.status_code == 422
    rep = client.get("/v1/pools/demo/memory-report", headers=a)
    assert rep.status_code == 200, rep.text
    body = rep.json()
    assert body["hosts"] == 6 and body["memory"]["reserved"] == demand / 2
    assert body["memory_overcommit"] == {"1.5": 6} and body["largest_flavor"] is not None
    assert {f["flavor"] for f in body["flavors"]} >= {"small"}
    assert client.get("/v1/pools/nope/memory-report", headers=a).status_code == 404
