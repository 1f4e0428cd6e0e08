"""Address pools, networks and NICs through the HTTP API: scoping, declared errors, strict bodies."""

from __future__ import annotations

from typing import Any


def test_ip_pool_lifecycle(client: Any, admin: dict[str, str]) -> None:
    r = client.post("/v1/ip-pools", json={"name": "lan", "cidr": "10.0.0.0/29"}, headers=admin)
    assert r.status_code == 201, r.text
    p = r.json()
    assert (p["project"], p["first"], p["last"], p["size"], p["free"]) == (
        "default", "10.0.0.1", "10.0.0.6", 6, 6)
    r = client.post("/v1/ip-pools/lan/allocations", json={"count": 2, "owner": "me"}, headers=admin)
    assert r.status_code == 201 and r.json() == [
        {"first": "10.0.0.1", "last": "10.0.0.2", "size": 2, "kind": "address", "owner": "me"}]
    r = client.post("/v1/ip-pools/lan/allocations", json={"address": "10.0.0.1"}, headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "conflict" and "10.0.0.1" in r.json()["message"]
    r = client.post("/v1/ip-pools/lan/reservations", json={"first": "10.0.0.5", "last": "10.0.0.6"},
                    headers=admin)
    assert r.status_code == 201 and r.json()["kind"] == "reserved"
    r = client.post("/v1/ip-pools/lan/release", json={"first": "10.0.0.2"}, headers=admin)
    assert r.status_code == 200
    r = client.get("/v1/ip-pools/lan/ranges", params={"free": "true"}, headers=admin)
    assert [(x["first"], x["last"]) for x in r.json()] == [("10.0.0.2", "10.0.0.4")]
    r = client.get("/v1/ip-pools/lan/ranges", params={"after": "10.0.0.1"}, headers=admin)
    assert [x["first"] for x in r.json()] == ["10.0.0.5"]
    pools = client.get("/v1/ip-pools", headers=admin).json()
    assert {p["name"] for p in pools} == {"lan", "mac"}  # admins see the global MAC pool too
    assert client.delete("/v1/ip-pools/lan", headers=admin).status_code == 409  # 10.0.0.1 allocated
    r = client.post("/v1/ip-pools/lan/release", json={"first": "10.0.0.1"}, headers=admin)
    assert r.status_code == 200
    assert client.delete("/v1/ip-pools/lan", headers=admin).status_code == 204
    assert client.get("/v1/ip-pools/lan", headers=admin).status_code == 404


def test_bad_bodies_are_422(client: Any, admin: dict[str, str]) -> None:
    client.post("/v1/ip-pools", json={"name": "lan", "cidr": "10.0.0.0/24"}, headers=admin)
    for body in ({"name": "x", "cidr": "10.0.0.1/24"}, {"name": "x", "cidr": "nonsense"},
                 {"name": "x", "cidr": "10.0.0.0/24", "extra": 1}, {"name": "../x", "cidr": "10.0.0.0/24"},
                 {"name": "x", "cidr": "10.0.0.0/99"}, {"name": "x", "cidr": "1.2.3.4.5/8"}):
        r = client.post("/v1/ip-pools", json=body, headers=admin)
        assert r.status_code == 422 and r.json()["error"] == "invalid_input", (body, r.text)
    for body in ({"address": "zz"}, {"count": 0}, {"address": "10.0.0.1", "count": 2}, {"address": "::1"},
                 {"owner": "a\x1b[2J"}, {"count": 2**70}):
        r = client.post("/v1/ip-pools/lan/allocations", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
    r = client.post("/v1/ip-pools/lan/reservations", json={"first": "10.0.0.9", "last": "10.0.0.3"},
                    headers=admin)
    assert r.status_code == 422


def test_projects_see_only_their_own(client: Any, admin: dict[str, str], member: Any) -> None:
    a, b = member("proj-a"), member("proj-b")
    r = client.post("/v1/networks", json={"name": "lan", "cidr": "10.1.0.0/24"}, headers=a)
    assert r.status_code == 201
    r = client.post("/v1/networks", json={"name": "lan", "cidr": "10.1.0.0/24"}, headers=b)
    assert r.status_code == 201 and r.json()["project"] == "proj-b"  # same subnet, isolated
    r = client.post("/v1/networks", json={"name": "only-a", "cidr": "10.2.0.0/24"}, headers=a)
    assert r.status_code == 201
    assert client.get("/v1/networks/only-a", headers=b).status_code == 404
    assert client.get("/v1/networks", params={"project": "proj-a"}, headers=b).status_code == 404
    assert client.get("/v1/ip-pools/only-a", headers=b).status_code == 404
    assert client.post("/v1/ip-pools/only-a/allocations", json={}, headers=b).status_code == 404
    assert [n["name"] for n in client.get("/v1/networks", headers=b).json()] == ["lan"]
    assert client.get("/v1/networks/lan", headers=admin).status_code == 409  # in two projects: which?
    r = client.get("/v1/networks/lan", params={"project": "proj-a"}, headers=admin)
    assert r.status_code == 200 and r.json()["project"] == "proj-a"
    assert client.get("/v1/networks/only-a", headers=admin).json()["project"] == "proj-a"
    r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "networks": ["only-a"]}, headers=b)
    assert r.status_code == 404
    r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "networks": ["lan", "only-a"]},
                    headers=a)
    assert r.status_code == 201, r.text
    nics = client.get("/v1/nics", params={"workload": "w"}, headers=a).json()
    assert [(n["network"], n["address"], n["index"]) for n in nics] == [("lan", "10.1.0.2", 0),
                                                                         ("only-a", "10.2.0.2", 1)]
    assert client.get("/v1/nics", params={"workload": "w"}, headers=b).status_code == 404
    assert client.get("/v1/networks/lan/nics", headers=a).json()[0]["workload"] == "w"
    assert client.delete("/v1/networks/lan", headers=a).status_code == 409
    assert client.post("/v1/ip-pools/lan/release", json={"first": "10.1.0.2"}, headers=a).status_code == 409
    assert client.delete("/v1/workloads/w", headers=a).status_code == 204
    assert client.get("/v1/networks/lan", headers=a).json()["free"] == 253
    assert client.delete("/v1/networks/lan", headers=a).status_code == 204


def test_workload_networks_field_is_validated(client: Any, admin: dict[str, str]) -> None:
    for nets in (["a/b"], "lan", [f"n{i}" for i in range(9)], [1]):
        r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "networks": nets},
                        headers=admin)
        assert r.status_code == 422, (nets, r.text)
    r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "networks": ["nope"]},
                    headers=admin)
    assert r.status_code == 404 and "nope" in r.json()["message"]
