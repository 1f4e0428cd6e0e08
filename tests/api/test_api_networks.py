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
    r = client.post("/v1/networks", json={"name": "x", "cidr": "10.5.0.0/24", "gateway": "10.5.0.1",
                                          "no_gateway": True}, headers=admin)
    assert r.status_code == 422 and "not both" in r.json()["message"]


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
    assert client.get("/v1/networks/lan", headers=a).json()["free"] == 252
    assert client.delete("/v1/networks/lan", headers=a).status_code == 204


def test_workload_networks_field_is_validated(client: Any, admin: dict[str, str]) -> None:
    for nets in (["a/b"], "lan", [f"n{i}" for i in range(9)], [1], ["lan", "lan"]):
        r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "networks": nets},
                        headers=admin)
        assert r.status_code == 422, (nets, r.text)
    r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "networks": ["nope"],
                                           "project": "demo"}, headers=admin)  # the project exists
    assert r.status_code == 404 and "nope" in r.json()["message"]
    for nets in (["a/b"], "lan", [f"n{i}" for i in range(9)], ["lan", "lan"]):  # batch items alike
        r = client.post("/v1/workloads/batch", json={"workloads": [{"name": "w", "flavor": "small",
                                                                    "networks": nets}]}, headers=admin)
        assert r.status_code == 422, (nets, r.text)


def test_batch_workloads_get_nics(client: Any, admin: dict[str, str]) -> None:
    r = client.post("/v1/networks", json={"name": "lan", "cidr": "10.3.0.0/24"}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post("/v1/workloads/batch", json={"workloads": [
        {"name": "b1", "flavor": "small", "networks": ["lan"]}, {"name": "b2", "flavor": "small"}]},
        headers=admin)
    assert r.status_code == 201, r.text
    nics = client.get("/v1/networks/lan/nics", headers=admin).json()
    assert [(n["workload"], n["address"]) for n in nics] == [("b1", "10.3.0.2")]
    assert client.get("/v1/networks/lan", headers=admin).json()["dhcp"] == "10.3.0.254"
    r = client.post("/v1/workloads/batch", json={"workloads": [{"name": "b3", "flavor": "small",
                                                                "networks": ["nope"]}]}, headers=admin)
    assert r.status_code == 404 and "nope" in r.json()["message"]


def test_routers_routes_and_lookup(client: Any, member: Any) -> None:
    a, b = member("proj-a"), member("proj-b")
    for name, cidr in (("lan1", "10.1.0.0/24"), ("lan2", "10.2.0.0/24"), ("ta", "10.9.1.0/24"),
                       ("tb", "10.9.2.0/24")):
        assert client.post("/v1/networks", json={"name": name, "cidr": cidr}, headers=a).status_code == 201
    for r, lan in (("r1", "lan1"), ("r2", "lan2")):
        assert client.post("/v1/routers", json={"name": r}, headers=a).status_code == 201
        for net, cost in ((lan, 1), ("ta", 1), ("tb", 10)):
            got = client.post(f"/v1/routers/{r}/interfaces", json={"network": net, "cost": cost}, headers=a)
            assert got.status_code == 201, got.text
    t = client.get("/v1/routers/r1/routes", headers=a).json()
    assert t["protocol"] == "link-state" and t["compute_s"] >= 0
    lan2 = next(r for r in t["routes"] if r["prefix"] == "10.2.0.0/24")
    assert lan2 == {"prefix": "10.2.0.0/24", "source": "link-state", "metric": 2.0, "nexthops": ["10.9.1.2"],
                    "interfaces": ["ta"], "as_path": []}
    r = client.post("/v1/routers/r1/interfaces/ta/link", json={"state": "down"}, headers=a)
    assert r.status_code == 200 and r.json()["state"] == "down"
    hit = client.get("/v1/routers/r1/lookup", params={"address": "10.2.0.9"}, headers=a).json()
    assert hit["route"]["nexthops"] == ["10.9.2.2"] and hit["route"]["metric"] == 11.0
    r = client.post("/v1/routers/r1/routes", json={"prefix": "0.0.0.0/0", "nexthop": "10.9.2.2"}, headers=a)
    assert r.status_code == 201
    hit = client.get("/v1/routers/r1/lookup", params={"address": "1.1.1.1"}, headers=a).json()
    assert hit["route"]["source"] == "static"
    r = client.delete("/v1/routers/r1/routes", params={"prefix": "0.0.0.0/0"}, headers=a)
    assert r.status_code == 204
    hit = client.get("/v1/routers/r1/lookup", params={"address": "1.1.1.1"}, headers=a).json()
    assert hit["route"] is None
    # declared errors
    assert client.get("/v1/routers/r1", headers=b).status_code == 404
    assert client.post("/v1/routers/r1/interfaces", json={"network": "lan2"}, headers=b).status_code == 404
    assert client.post("/v1/routers", json={"name": "x", "protocol": "ospf"}, headers=a).status_code == 422
    assert client.post("/v1/routers/r1/interfaces", json={"network": "ta"}, headers=a).status_code == 409
    assert client.post("/v1/routers/r1/interfaces/ta/link", json={"state": "sideways"},
                       headers=a).status_code == 422
    assert client.get("/v1/routers/r1/lookup", params={"address": "x"}, headers=a).status_code == 422
    r = client.post("/v1/routers/r1/routes", json={"prefix": "10.7.0.0/16", "nexthop": "10.66.0.1"},
                    headers=a)
    assert r.status_code == 422 and "not on a network" in r.json()["message"]
    assert client.delete("/v1/networks/ta", headers=a).status_code == 409
    assert client.delete("/v1/routers/r1", headers=a).status_code == 204
    assert client.get("/v1/networks/ta", headers=a).json()["routers"] == ["r2"]


def test_address_grammar_in_the_schema_matches_the_parser() -> None:
    """The OpenAPI patterns accept exactly what the services parse (no schema-valid request is
    refused for its syntax): checked on random IPv4/IPv6 addresses and prefixes and on near misses."""
    import ipaddress
    import random
    import re

    from poolvisor.api.network_schemas import CIDR_PATTERN, IP_PATTERN, NETWORK_CIDR_PATTERN

    ip, cidr, net = re.compile(IP_PATTERN), re.compile(CIDR_PATTERN), re.compile(NETWORK_CIDR_PATTERN)
    rnd = random.Random(7)
    for _ in range(3000):
        bits = rnd.choice([32, 128])
        value = rnd.getrandbits(bits) & ~((1 << rnd.randrange(bits)) - 1)  # runs of zeros: compression
        a = ipaddress.ip_address(value) if bits == 32 else ipaddress.IPv6Address(value)
        if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
            continue  # Python prints these with an embedded IPv4 part, which the schema leaves out
        for text in {str(a), a.exploded}:
            assert ip.match(text), text
        plen = rnd.randrange(bits + 1)
        n = ipaddress.ip_network(f"{a}/{plen}", strict=False)
        assert cidr.match(str(n)), n
        assert bool(net.match(str(n))) == (plen <= bits - 2), n
    for text in ("01.2.3.4", "1.2.3", "1.2.3.256", "1::2::3", ":::", "12345::", "g::1", "1.2.3.4.5",
                 "::1/129", "10.0.0.0/33", "10.0.0.0/08", "0/0", "1.2.3.4/"):
        assert not ip.match(text) and not cidr.match(text), text
