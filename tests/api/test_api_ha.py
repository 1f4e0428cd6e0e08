"""/v1/ha: status (with a failure handled by the loop), admission settings, 409 admission_refused."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from poolvisor.api.app import create_app
from poolvisor.drivers.sim import SimDriver
from poolvisor.services import Services

with warnings.catch_warnings():  # as in conftest.py
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_status_and_admission_roundtrip(client: Any, admin: dict[str, str], svc: Services,
                                        member: Callable[[str], dict[str, str]]) -> None:
    r = client.get("/v1/ha", headers=admin)
    assert r.status_code == 200
    body = r.json()
    assert body["settings"] == {"interval_s": 1.0, "suspect_after": 1, "fail_after": 3}
    assert body["admission"]["global"] == {"tolerate_failures": 0, "reserve_percent": {}}
    assert client.get("/v1/ha", headers=member("acme")).status_code == 200  # fleet-wide: members read
    assert client.put("/v1/ha/admission", headers=member("acme"), json={}).status_code == 403
    r = client.put("/v1/ha/admission", headers=admin, json={"tolerate_failures": 1,
                                                             "reserve_percent": {"memory_mib": 20}})
    assert r.status_code == 200 and r.json()["global"]["tolerate_failures"] == 1
    r = client.put("/v1/ha/admission", headers=admin, json={"pool": "demo", "tolerate_failures": 0})
    assert r.status_code == 200 and r.json()["pools"]["demo"]["tolerate_failures"] == 0
    assert client.get("/v1/ha/admission", headers=admin).json()["pools"]["demo"]["reserve_percent"] == {}
    for bad in ({"tolerate_failures": -1}, {"reserve_percent": {"vcpu": 100}}, {"tolerate_failures": True},
                {"nope": 1}):
        assert client.put("/v1/ha/admission", headers=admin, json=bad).status_code == 422, bad
    assert client.put("/v1/ha/admission", headers=admin, json={"pool": "nope"}).status_code == 404
    assert client.delete("/v1/ha/admission/pools/demo", headers=admin).status_code == 204
    assert client.delete("/v1/ha/admission/pools/demo", headers=admin).status_code == 404


def test_creation_beyond_admission_is_a_declared_409(client: Any, admin: dict[str, str],
                                                     svc: Services) -> None:
    svc.catalog.create_project("acme")
    total = sum(h.allocatable["vcpu"] for h in svc.hosts.list_hosts())
    r = client.put("/v1/ha/admission", headers=admin, json={"reserve_percent": {"vcpu": 99.9}})
    assert r.status_code == 200
    r = client.post("/v1/workloads", headers=admin, json={"project": "acme", "name": "big",
                                                          "demand": {"vcpu": total / 100 + 1}})
    assert r.status_code == 409
    e = r.json()
    assert e["error"] == "admission_refused" and e["detail"]["resource"] == "vcpu"
    assert "reserve 99.9 % of vcpu" in e["message"] and "headroom" in e["detail"]
    spec = client.get("/openapi.json").json()["paths"]["/v1/workloads"]["post"]["responses"]
    assert "409" in spec
    r = client.post("/v1/workloads/batch", headers=admin, json={
        "project": "acme", "workloads": [{"name": "b1", "demand": {"vcpu": total / 100 + 1}}]})
    assert r.status_code == 409 and r.json()["error"] == "admission_refused"


def test_served_loop_fences_and_restarts(svc: Services, admin_token: str) -> None:
    """`serve`'s lifespan runs the HA loop: a host killed in the sim is fenced and its workloads
    restarted elsewhere within the goal (5 s declared, 10 s running), on the wall clock."""
    svc.catalog.create_project("acme")
    for i in range(4):
        svc.workloads.create_workload("acme", f"w{i}", demand={"vcpu": 1, "memory_mib": 512})
    victim = svc.workloads.get_workload("acme", "w0").host
    assert victim is not None
    d = svc.driver
    assert isinstance(d, SimDriver)
    hdr = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(create_app(svc, ha_interval=0.2), raise_server_exceptions=False) as c:
        t0 = time.monotonic()
        d.fail(victim)
        while time.monotonic() - t0 < 10:
            fails = c.get("/v1/ha", headers=hdr).json()["failures"]
            if fails and fails[0]["restored_at"] is not None:
                break
            time.sleep(0.05)
        assert fails and fails[0]["host"] == victim and fails[0]["restore_s"] is not None
        assert time.monotonic() - t0 < 10
    w0 = svc.workloads.get_workload("acme", "w0")
    assert w0.state == "running" and w0.host != victim
    assert svc.hosts.get_host(victim).state == "fenced"
