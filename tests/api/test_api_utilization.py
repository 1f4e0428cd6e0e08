"""Utilization through the API: bulk samples in (all or none), a workload's grid out, 4xx cases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from poolvisor.services import Services
from poolvisor.store.rows import UtilizationSampleRow


def _count(svc: Services) -> int:
    return int(svc.store.run(lambda s: s.scalar(select(func.count()).select_from(UtilizationSampleRow)),
                             write=False))


def _two_vms(client: Any, admin: dict[str, str]) -> None:
    for n in ("web1", "web2"):
        body = {"name": n, "flavor": "small", "project": "demo"}
        r = client.post("/v1/workloads", json=body, headers=admin)
        assert r.status_code == 201, r.text


def test_record_and_read(client: Any, admin: dict[str, str], svc: Services) -> None:
    _two_vms(client, admin)
    samples = [
        {"workload": "web1", "project": "demo", "time": 6000, "cpu": 0.2},
        {"workload": "web1", "project": "demo", "time": "1970-01-01T01:40:30Z", "cpu": 0.4},  # 6030
        {"workload": "web1", "project": "demo", "time": "1970-01-01T01:43:20", "cpu": 0.9},  # 6200, UTC
        {"workload": "web2", "project": "demo", "time": 6100.5, "cpu": 1},
    ]
    r = client.post("/v1/utilization", json={"samples": samples}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json() == {"recorded": 4} and _count(svc) == 4
    r = client.get("/v1/workloads/web1/utilization", params={"project": "demo", "interval": 60, "steps": 4},
                   headers=admin)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["project"] == "demo" and out["workload"] == "web1" and out["interval_s"] == 60
    assert out["start"].startswith("1970-01-01T01:40:00")
    assert [round(x, 12) for x in out["cpu"]] == [0.3, 0.3, 0.3, 0.9]
    # admins may omit ?project= when the name is unique; `since` bounds the window
    r = client.get("/v1/workloads/web2/utilization",
                   params={"interval": 60, "since": "1970-01-01T01:40:00Z"}, headers=admin)
    assert r.status_code == 200 and r.json()["cpu"] == [1.0, 1.0]


def test_bad_input_is_4xx_and_writes_nothing(client: Any, admin: dict[str, str], svc: Services) -> None:
    _two_vms(client, admin)
    ok = {"workload": "web1", "project": "demo", "time": 6000, "cpu": 0.5}
    bad = [
        ({"samples": [ok, {**ok, "workload": "ghost"}]}, 404),
        ({"samples": [ok, {**ok, "project": "nope"}]}, 404),
        ({"samples": [ok, {**ok, "cpu": 1.5}]}, 422),
        ({"samples": [ok, {**ok, "cpu": -0.1}]}, 422),
        ({"samples": [ok, {**ok, "time": 1.7e12}]}, 422),  # milliseconds
        ({"samples": [ok, {**ok, "time": "yesterday"}]}, 422),
        ({"samples": [ok, {**ok, "time": "2200-01-01T00:00:00Z"}]}, 422),
        ({"samples": [ok, {**ok, "extra": 1}]}, 422),
        ({"samples": []}, 422),
        ({}, 422),
    ]
    for body, status in bad:
        r = client.post("/v1/utilization", json=body, headers=admin)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"] in ("not_found", "invalid_input")
    nan = b'{"samples": [{"workload": "web1", "project": "demo", "time": 6000, "cpu": NaN}]}'
    r = client.post("/v1/utilization", content=nan, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert client.post("/v1/utilization", json={"samples": [ok]}).status_code == 401
    big = {"samples": [ok] * 100_000}  # > 4 MiB, the bulk endpoints' body limit
    assert client.post("/v1/utilization", json=big, headers=admin).status_code == 413
    over = {"samples": [ok] * 10_001}  # over the schema's maxItems but within the body limit: 422
    assert client.post("/v1/utilization", json=over, headers=admin).status_code == 422
    assert _count(svc) == 0
    # reading: nothing recorded, unknown workload, bad parameters
    r = client.get("/v1/workloads/web1/utilization", params={"project": "demo"}, headers=admin)
    assert r.status_code == 422 and "no utilization recorded for VM demo/web1" in r.json()["message"]
    assert client.get("/v1/workloads/ghost/utilization", headers=admin).status_code == 404
    for params in ({"interval": 0}, {"steps": 0}, {"steps": 2, "since": "2026-01-01T00:00:00Z"},
                   {"since": "soon"}):
        r = client.get("/v1/workloads/web1/utilization", params={"project": "demo", **params}, headers=admin)
        assert r.status_code == 422, (params, r.text)


def test_members_stay_in_their_project(client: Any, admin: dict[str, str], svc: Services,
                                       member: Callable[[str], dict[str, str]]) -> None:
    _two_vms(client, admin)
    alice = member("alpha")
    r = client.post("/v1/workloads", json={"name": "a1", "flavor": "small"}, headers=alice)
    assert r.status_code == 201, r.text
    own = {"workload": "a1", "time": 6000, "cpu": 0.5}
    assert client.post("/v1/utilization", json={"samples": [own]}, headers=alice).status_code == 201
    other = {"workload": "web1", "project": "demo", "time": 6000, "cpu": 0.5}
    r = client.post("/v1/utilization", json={"samples": [own, other]}, headers=alice)
    assert r.status_code == 404 and _count(svc) == 1
    assert client.get("/v1/workloads/web1/utilization", params={"project": "demo"},
                      headers=alice).status_code == 404
    r = client.get("/v1/workloads/a1/utilization", headers=alice)
    assert r.status_code == 200 and r.json()["cpu"] == [0.5] * 288
