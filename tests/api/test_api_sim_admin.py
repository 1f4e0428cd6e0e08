"""The sim admin extension (/v1/sim) is mounted only on request (serve --demo / --sim-admin): the
default API has no fault injection at all."""

from __future__ import annotations

from typing import Any, cast

from poolvisor.api.app import create_app
from poolvisor.services import Services


def test_the_default_api_has_no_fault_injection(client: Any, admin: dict[str, str]) -> None:
    doc = create_app(cast(Services, None)).openapi()
    assert not [p for p in doc["paths"] if p.startswith("/v1/sim") or p.endswith("/fail")]
    assert "sim admin" not in {t for item in doc["paths"].values() for op in item.values()
                               for t in op.get("tags", [])}
    served = client.get("/openapi.json").json()
    assert not [p for p in served["paths"] if "/sim" in p or "fail" in p]
    for path in ("/v1/sim/hosts/demo-000/fail", "/v1/hosts/demo-000/fail", "/v1/sim/faults"):
        assert client.post(path, headers=admin).status_code in (404, 405)


def test_the_extension_fails_revives_and_injects(sim_client: Any, admin: dict[str, str], svc: Services,
                                                 member: Any) -> None:
    doc = create_app(cast(Services, None), sim_admin=True).openapi()
    assert {"/v1/sim/hosts/{name}/fail", "/v1/sim/hosts/{name}/revive", "/v1/sim/faults",
            "/v1/sim/hosts/{name}/partition", "/v1/sim/hosts/{name}/heal"} <= set(doc["paths"])
    c = sim_client
    assert c.post("/v1/sim/hosts/demo-000/fail", headers=member("team")).status_code == 403
    body = {"name": "v1", "flavor": "tiny", "project": "demo"}
    w = c.post("/v1/workloads", json=body, headers=admin).json()
    r = c.post(f"/v1/sim/hosts/{w['host']}/fail", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "down"
    assert svc.workloads.get_workload("demo", "v1").state == "lost" and not svc.driver.heartbeat(w["host"])
    r = c.post(f"/v1/sim/hosts/{w['host']}/revive", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "up" and svc.driver.heartbeat(w["host"])

    r = c.post("/v1/sim/faults", json={"operation": "create", "times": 1}, headers=admin)
    assert r.status_code == 201 and r.json() == {"operation": "create", "host": None, "times": 1}
    r = c.post("/v1/workloads", json={"name": "v2", "flavor": "tiny", "project": "demo"}, headers=admin)
    assert r.status_code == 503 and "injected" in r.json()["message"]
    r = c.post("/v1/workloads", json={"name": "v2", "flavor": "tiny", "project": "demo"}, headers=admin)
    assert r.status_code == 201  # the fault was used up
    r = c.post("/v1/sim/faults", json={"operation": "teleport"}, headers=admin)
    assert r.status_code == 422 and "unknown sim operation" in r.json()["message"]
    assert c.post("/v1/sim/hosts/nope/revive", headers=admin).status_code == 404
    # a partition: the host stays up in the store and its guest keeps running; no heartbeat
    body3 = {"name": "v3", "flavor": "tiny", "project": "demo"}
    w3 = c.post("/v1/workloads", json=body3, headers=admin).json()
    r = c.post(f"/v1/sim/hosts/{w3['host']}/partition", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "up" and not svc.driver.heartbeat(w3["host"])
    assert svc.workloads.get_workload("demo", "v3").state == "running"
    assert c.post(f"/v1/sim/hosts/{w3['host']}/partition", headers=member("team")).status_code == 403
    r = c.post(f"/v1/sim/hosts/{w3['host']}/heal", headers=admin)
    assert r.status_code == 200 and svc.driver.heartbeat(w3["host"])
    assert c.post("/v1/sim/hosts/nope/heal", headers=admin).status_code == 404
    assert svc.repair.check().ok


def test_hosts_carry_their_driver_uri_and_fence(client: Any, admin: dict[str, str]) -> None:
    body = {"name": "n1", "driver": "sim", "uri": "sim://r?vcpu=6&memory_mib=2048",
            "fence": "command:/bin/true"}
    r = client.post("/v1/hosts", json=body, headers=admin)
    assert r.status_code == 201, r.text
    h = r.json()
    assert (h["driver"], h["uri"], h["fence"]) == ("sim", body["uri"], "command:/bin/true")
    assert h["capacity"]["vcpu"] == 6 and h["capacity"]["memory_mib"] == 2048
    assert client.get("/v1/hosts/demo-000", headers=admin).json()["driver"] == "sim"
    for bad in ({"uri": "sim://a b"}, {"fence": "ipmi"}, {"fence": "command:"}, {"uri": "sim://["}):
        r = client.post("/v1/hosts", json={"name": "n2", "capacity": {"vcpu": 1}, **bad}, headers=admin)
        assert r.status_code == 422, (bad, r.text)
    vmware = {"name": "n2", "capacity": {"vcpu": 1}, "driver": "vmware"}
    r = client.post("/v1/hosts", json=vmware, headers=admin)
    assert r.status_code == 404 and "unknown driver 'vmware'" in r.json()["message"]
    r = client.post("/v1/hosts", json={"name": "n2", "uri": "sim://nothing"}, headers=admin)
    assert r.status_code == 422 and "no capacity" in r.json()["message"]
    assert "n2" not in {x["name"] for x in client.get("/v1/hosts", headers=admin).json()}
    pools = client.get("/v1/pools", headers=admin).json()
    assert "driver" not in pools[0]
