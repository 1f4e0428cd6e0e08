"""Fair-share weights of projects, pools' allocation policies and workloads' per-resource
reservation/limit/shares through the API (docs/scheduling.md)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poolvisor.api.app import create_app
from poolvisor.services import Services, open_services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'api.db'}")
    s.catalog.create_pool("p")
    s.hosts.create_host("h0", {"vcpu": 8, "memory_mib": 8192}, pool="p")
    s.catalog.create_project("demo")
    yield s
    s.close()


@pytest.fixture
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc), raise_server_exceptions=False) as c:
        yield c


def test_project_weight_on_create_and_set(client: Any, admin: dict[str, str],
                                          member: Callable[[str], dict[str, str]]) -> None:
    r = client.post("/v1/projects", json={"name": "heavy", "weight": 3}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["weight"] == 3
    assert client.get("/v1/projects/demo", headers=admin).json()["weight"] == 1
    r = client.put("/v1/projects/demo/weight", json={"weight": 0.5}, headers=admin)
    assert r.status_code == 200 and r.json() == {"name": "demo", "workloads": 0, "weight": 0.5}
    for bad in (0, -1, "2", None, 1e7):
        assert client.put("/v1/projects/demo/weight", json={"weight": bad}, headers=admin).status_code == 422
    assert client.put("/v1/projects/ghost/weight", json={"weight": 2}, headers=admin).status_code == 404
    assert client.put("/v1/projects/demo/weight", json={"weight": 2},
                      headers=member("demo")).status_code == 403


def test_allocation_policy_and_declared_resources(client: Any, admin: dict[str, str],
                                                  member: Callable[[str], dict[str, str]]) -> None:
    assert client.get("/v1/pools/p/allocation-policy", headers=admin).json() == {"pool": "p", "policy": "max"}
    r = client.put("/v1/pools/p/allocation-policy", json={"policy": "balanced"}, headers=admin)
    assert r.status_code == 200 and r.json()["policy"] == "balanced"
    assert client.put("/v1/pools/p/allocation-policy", json={"policy": "median"},
                      headers=admin).status_code == 422
    assert client.put("/v1/pools/p/allocation-policy", json={"policy": "min"},
                      headers=member("demo")).status_code == 403
    assert client.put("/v1/pools/ghost/allocation-policy", json={"policy": "min"},
                      headers=admin).status_code == 404
    m = member("demo")
    body = {"name": "w", "demand": {"vcpu": 4}, "pool": "p", "reservation": {"vcpu": 2},
            "shares": {"vcpu": 2000}}
    r = client.post("/v1/workloads", json=body, headers=m)
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["demand"] == {"vcpu": 4}  # balanced: 2 + (4 - 2) * min(1, 2000 / 2000)
    assert w["resources"] == {"vcpu": {"reservation": 2, "limit": 4, "shares": 2000}}
    assert client.get("/v1/workloads/w", headers=m).json()["resources"] == w["resources"]
    plain = client.post("/v1/workloads", json={"name": "v", "demand": {"vcpu": 1}}, headers=m).json()
    assert plain["resources"] is None
    for bad in ({"reservation": {"vcpu": 5}}, {"limit": {"gpu": 1}}, {"shares": {"vcpu": 0}},
                {"shares": {"vcpu": "2"}}, {"reservation": {"vcpu": -1}}):
        r = client.post("/v1/workloads", json={"name": "x", "demand": {"vcpu": 4}, **bad}, headers=m)
        assert r.status_code == 422, (bad, r.text)


def test_batch_items_declare_reservation_limit_shares(client: Any, admin: dict[str, str],
                                                      member: Callable[[str], dict[str, str]]) -> None:
    """A gang (labels make it one) of items reserving 2 of 4 vCPU under pool policy min: four fit
    the 8-vCPU host and each claims its reservation; a bad declaration is a 422 naming the item."""
    r = client.put("/v1/pools/p/allocation-policy", json={"policy": "min"}, headers=admin)
    assert r.status_code == 200
    m = member("demo")
    item = {"demand": {"vcpu": 4, "memory_mib": 512}, "reservation": {"vcpu": 2}, "limit": {"vcpu": 4},
            "shares": {"vcpu": 1500}, "forbidden_labels": {"ssd": "no"}}
    r = client.post("/v1/workloads/batch", json={"pool": "p", "workloads": [
        {"name": f"g{i}", **item} for i in range(4)]}, headers=m)
    assert r.status_code == 201, r.text
    got = r.json()["workloads"]
    assert [w["demand"]["vcpu"] for w in got] == [2, 2, 2, 2]
    assert {w["sized_by"] for w in got} == {"min"}
    assert got[0]["resources"]["vcpu"] == {"reservation": 2, "limit": 4, "shares": 1500}
    pool = client.get("/v1/pools/p", headers=admin).json()
    assert pool["allocated"]["vcpu"] == 8
    for bad, why in (({"reservation": {"vcpu": 5}}, "exceeds the limit"), ({"limit": {"gpu": 1}}, "gpu")):
        r = client.post("/v1/workloads/batch?dry_run=true", json={"workloads": [
            {"name": "ok", "demand": {"vcpu": 1}}, {"name": "bad", "demand": {"vcpu": 4}, **bad}]}, headers=m)
        assert r.status_code == 422, r.text
        assert "batch item 1" in r.json()["message"] and why in r.json()["message"], r.text
    r = client.post("/v1/workloads/batch?dry_run=true", json={"workloads": [
        {"name": "ok", "demand": {"vcpu": 1}, "shares": {"vcpu": 0}}]}, headers=m)
    assert r.status_code == 422 and "workloads" in r.text  # out of the schema's range


def test_granted_through_the_api(svc: Services, client: Any, member: Callable[[str], dict[str, str]]) -> None:
    """Two busy guests with vCPU shares 3:1 on a contended 4-vCPU sim host: GET reports granted 3 and 1."""
    svc.catalog.create_pool("tight")
    svc.hosts.create_host("t0", {"vcpu": 4, "memory_mib": 8192}, pool="tight")
    svc.shares.set_allocation_policy("tight", "min")
    m = member("demo")
    for name, sh in (("big", 3000), ("small", 1000)):
        r = client.post("/v1/workloads", json={"name": name, "demand": {"vcpu": 4, "memory_mib": 256},
                                               "pool": "tight", "reservation": {"vcpu": 1},
                                               "shares": {"vcpu": sh}}, headers=m)
        assert r.status_code == 201, r.text
        assert r.json()["sized_by"] == "min"
    big, small = (client.get(f"/v1/workloads/{n}", headers=m).json() for n in ("big", "small"))
    assert big["granted"]["vcpu"] == pytest.approx(3.0) and small["granted"]["vcpu"] == pytest.approx(1.0)
    assert big["granted"]["memory_mib"] == 256
    assert client.post("/v1/workloads/small/stop", headers=m).status_code == 200
    big, small = (client.get(f"/v1/workloads/{n}", headers=m).json() for n in ("big", "small"))
    assert big["granted"]["vcpu"] == pytest.approx(4.0) and small["granted"] is None  # no contention now
