"""Path-vector routers through the HTTP API: AS numbers, the local-preference import policy, AS
paths in the routes and lookups, re-convergence rounds after a link failure, declared 4xx."""

from __future__ import annotations

from typing import Any


def test_path_vector_routers(client: Any, member: Any) -> None:
    a, b = member("pv-a"), member("pv-b")
    nets = (("lan1", "10.1.0.0/24"), ("lan2", "10.2.0.0/24"), ("lan3", "10.3.0.0/24"),
            ("l12", "10.12.0.0/29"), ("l23", "10.23.0.0/29"), ("l13", "10.13.0.0/29"))
    for name, cidr in nets:
        assert client.post("/v1/networks", json={"name": name, "cidr": cidr}, headers=a).status_code == 201
    asn = {}
    for r, num, links in (("r1", 65001, ("lan1", "l12", "l13")), ("r2", None, ("lan2", "l12", "l23")),
                          ("r3", None, ("lan3", "l23", "l13"))):
        body: dict[str, Any] = {"name": r, "protocol": "path-vector", **({"asn": num} if num else {})}
        got = client.post("/v1/routers", json=body, headers=a)
        assert got.status_code == 201, got.text
        asn[r] = got.json()["asn"]
        for net in links:
            got = client.post(f"/v1/routers/{r}/interfaces", json={"network": net}, headers=a)
            assert got.status_code == 201, got.text
    assert asn == {"r1": 65001, "r2": 64512, "r3": 64513}
    t = client.get("/v1/routers/r1/routes", headers=a).json()
    assert t["protocol"] == "path-vector" and t["rounds"] >= 1
    lan2 = next(r for r in t["routes"] if r["prefix"] == "10.2.0.0/24")
    assert (lan2["source"], lan2["metric"], lan2["as_path"], lan2["interfaces"]) == (
        "path-vector", 1.0, [64512], ["l12"])
    # prefer r3 for what it advertises: r1 reaches lan2 through r3
    got = client.put("/v1/routers/r1/local-pref/r3", json={"pref": 300}, headers=a)
    assert got.status_code == 200 and got.json()["local_pref"] == {"r3": 300}, got.text
    hit = client.get("/v1/routers/r1/lookup", params={"address": "10.2.0.7"}, headers=a).json()
    assert hit["route"]["as_path"] == [64513, 64512] and hit["route"]["interfaces"] == ["l13"]
    assert client.delete("/v1/routers/r1/local-pref/r3", headers=a).json()["local_pref"] == {}
    # r1's link to r2 fails: around through r3, with the rounds it took
    assert client.post("/v1/routers/r1/interfaces/l12/link", json={"state": "down"},
                       headers=a).status_code == 200
    t = client.get("/v1/routers/r1/routes", headers=a).json()
    lan2 = next(r for r in t["routes"] if r["prefix"] == "10.2.0.0/24")
    assert lan2["as_path"] == [64513, 64512] and 1 <= t["rounds"] <= 5
    # declared errors
    assert client.post("/v1/routers", json={"name": "x", "protocol": "path-vector", "asn": 65001},
                       headers=a).status_code == 409
    assert client.post("/v1/routers", json={"name": "x", "protocol": "path-vector", "asn": 0},
                       headers=a).status_code == 422
    assert client.post("/v1/routers", json={"name": "x", "asn": 65009}, headers=a).status_code == 422
    assert client.put("/v1/routers/r1/local-pref/r2", json={"pref": -1}, headers=a).status_code == 422
    assert client.put("/v1/routers/r1/local-pref/r2", json={}, headers=a).status_code == 422
    assert client.put("/v1/routers/r1/local-pref/nope", json={"pref": 5}, headers=a).status_code == 404
    assert client.put("/v1/routers/r1/local-pref/r2", json={"pref": 5}, headers=b).status_code == 404
