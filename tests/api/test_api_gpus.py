"""A live pool with shared GPUs through the REST API on a real store (services/gpus.py, ledger.py,
gpu_cache.py): hosts declare GPU devices, fgd-ri places fractional-GPU workloads on specific devices
(the same devices the in-memory reference picks), deletion and migration free them, bad GPU input is
a declared 4xx, and the invariant check covers device allocations."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from taskwait import wait_task

from poolvisor.api.app import create_app
from poolvisor.domain.models import HostSpec
from poolvisor.domain.resources import DEFAULT_RESOURCES
from poolvisor.policies.placement import PlacementPolicy, Request, gpushare, place
from poolvisor.services import Services, open_services
from poolvisor.state.cluster import ClusterState

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

HOSTS: list[dict[str, Any]] = [  # two shapes: 8 x A100 and 4 x T4 (interleaved by fgd-ri's fill order)
    {"name": f"a{i}", "capacity": {"vcpu": 96, "memory_mib": 786432}, "pool": "gpu",
     "gpus": [{"count": 8, "model": "A100", "memory_mib": 40960}]} for i in range(3)
] + [
    {"name": f"t{i}", "capacity": {"vcpu": 64, "memory_mib": 262144, "gpu": 4}, "pool": "gpu",
     "gpus": [{"count": 4, "model": "T4", "memory_mib": 16384}]} for i in range(3)
]
ASKS = [0.25, 0.5, 0.25, 1, 0.3, 0.7, 2, 0.5, 0.125, 0.4, 1, 0.6, 0.25, 0.2, 4, 0.5, 0.35, 0.65, 0.1, 0.9]


@pytest.fixture
def gsvc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'gpu.db'}", policy=PlacementPolicy.named("fgd-ri"))
    yield s
    s.close()


@pytest.fixture
def api(gsvc: Services) -> Iterator[tuple[TestClient, dict[str, str]]]:
    tok = gsvc.auth.bootstrap_admin_token()
    assert tok is not None
    with TestClient(create_app(gsvc), raise_server_exceptions=False) as c:
        yield c, {"Authorization": f"Bearer {tok}"}


def make_pool(c: TestClient, h: dict[str, str]) -> None:
    assert c.post("/v1/pools", json={"name": "gpu"}, headers=h).status_code == 201
    for body in HOSTS:
        r = c.post("/v1/hosts", json=body, headers=h)
        assert r.status_code == 201, r.text


def reference() -> tuple[ClusterState, gpushare.GpuDevices, PlacementPolicy]:
    """The same pool in memory: a ClusterState with the per-GPU books attached (docs/online-packing.md)."""
    st = ClusterState(DEFAULT_RESOURCES)
    for body in HOSTS:
        n = sum(g["count"] for g in body["gpus"])
        st.add_host(HostSpec(body["name"], {**body["capacity"], "gpu": n}))
    free = np.zeros((st.n, 8), dtype=np.int64)
    for i, body in enumerate(HOSTS):
        free[i, : sum(g["count"] for g in body["gpus"])] = 1000
    return st, gpushare.attach(st, gpushare.GpuDevices(free)), PlacementPolicy.named("fgd-ri")


def test_fgd_ri_places_fractions_on_the_devices_the_reference_picks(api: tuple[TestClient, dict[str, str]],
                                                                      gsvc: Services) -> None:
    c, h = api
    make_pool(c, h)
    hosts = {x["name"]: x for x in c.get("/v1/hosts", headers=h).json()}
    assert [(g["device"], g["model"], g["memory_mib"], g["free_milli"]) for g in hosts["t0"]["gpus"]] == [
        (d, "T4", 16384.0, 1000) for d in range(4)]
    assert hosts["a1"]["capacity"]["gpu"] == 8  # the devices set the capacity
    st, dev, policy = reference()
    for i, g in enumerate(ASKS):
        demand = {"vcpu": 4, "memory_mib": 16384, "gpu": g}
        r = c.post("/v1/workloads", json={"name": f"w{i}", "demand": demand, "pool": "gpu"}, headers=h)
        assert r.status_code == 201, r.text
        w = r.json()
        req = Request(f"default/w{i}", st.resources.vector(demand))
        d = place(st, req, policy)
        pod = gpushare.request_pod(st, req.demand)
        gpu = gpushare.FgdRiScorer().explain(st, req, [d.host_index])[0]["gpu"] if pod.shares_gpu else -1
        taken = dev.allocate(d.host_index, pod, gpu)
        st.allocate(d.host_index, req.demand)
        assert w["host"] == d.host, (i, g)
        assert [(x["host"], x["device"], x["milli"]) for x in w["gpus"]] == [
            (d.host, int(t), pod.milli) for t in sorted(taken)], (i, g, w["gpus"])
        assert w["explanation"]["top"][0]["scores"].keys() == {"fgd-ri"}
    # the live books equal the reference's, device by device
    hosts = {x["name"]: x for x in c.get("/v1/hosts", headers=h).json()}
    for k, body in enumerate(HOSTS):
        got = [g["free_milli"] for g in hosts[body["name"]]["gpus"]]
        assert got == dev.free[k, : len(got)].tolist(), body["name"]
    shared = [w for w in c.get("/v1/workloads", headers=h).json() if 0 < w["demand"]["gpu"] < 1]
    assert len({(w["host"], w["gpus"][0]["device"]) for w in shared}) < len(shared)  # GPUs really shared
    assert gsvc.repair.check().ok, gsvc.repair.check().violations


def test_delete_and_migrate_free_devices(api: tuple[TestClient, dict[str, str]], gsvc: Services) -> None:
    c, h = api
    make_pool(c, h)
    for i, g in enumerate((0.5, 0.25, 2)):
        assert c.post("/v1/workloads", json={"name": f"w{i}", "demand": {"vcpu": 2, "gpu": g}, "pool": "gpu"},
                      headers=h).status_code == 201

    def held() -> dict[str, int]:
        return {x["name"]: sum(g["allocated_milli"] for g in x["gpus"])
                for x in c.get("/v1/hosts", headers=h).json()}

    assert sum(held().values()) == 2750
    w0 = c.get("/v1/workloads/w0", headers=h).json()
    assert len(w0["gpus"]) == 1 and w0["gpus"][0]["milli"] == 500
    assert c.delete("/v1/workloads/w0", headers=h).status_code == 204
    assert sum(held().values()) == 2250
    w1 = c.get("/v1/workloads/w1", headers=h).json()
    src = w1["host"]
    target = next(x["name"] for x in HOSTS if x["name"] != src)
    task = wait_task(c, h, c.post("/v1/workloads/w1/migrate", json={"host": target}, headers=h))
    assert task["state"] == "succeeded", task
    w1 = c.get("/v1/workloads/w1", headers=h).json()
    assert w1["host"] == target and [(g["host"], g["milli"]) for g in w1["gpus"]] == [(target, 250)]
    after = held()
    assert after[target] >= 250 and sum(after.values()) == 2250
    assert gsvc.repair.check().ok, gsvc.repair.check().violations
    assert c.delete("/v1/workloads/w2", headers=h).status_code == 204
    assert c.delete("/v1/workloads/w1", headers=h).status_code == 204
    assert sum(held().values()) == 0
    assert gsvc.repair.check().ok


@pytest.mark.parametrize(("body", "fragment"), [
    ({"name": "x", "capacity": {"vcpu": 8, "gpu": 2.5}}, "whole number of GPUs"),
    ({"name": "x", "capacity": {"vcpu": 8, "gpu": 2}, "overcommit": {"gpu": 2}}, "not overcommitted"),
    ({"name": "x", "capacity": {"vcpu": 8, "gpu": 3}, "gpus": [{"count": 2}]}, "2 GPU devices are declared"),
    ({"name": "x", "capacity": {"vcpu": 8}, "gpus": [{"count": 65}]}, ""),
    ({"name": "x", "capacity": {"vcpu": 8}, "gpus": [{"count": 2, "model": "bad model"}]}, ""),
    ({"name": "x", "capacity": {"vcpu": 8}, "gpus": [{"count": 40}, {"count": 40}]}, "at most 64 GPUs"),
])
def test_bad_gpu_declarations_are_4xx(api: tuple[TestClient, dict[str, str]], body: dict[str, Any],
                                      fragment: str) -> None:
    c, h = api
    r = c.post("/v1/hosts", json=body, headers=h)
    assert r.status_code == 422, r.text
    assert fragment in r.text
    assert c.get("/v1/hosts/x", headers=h).status_code == 404


@pytest.mark.parametrize(("gpu", "fragment"), [(1.5, "fraction of one GPU"), (0.0005, "steps of 0.001")])
def test_bad_gpu_demands_are_4xx(api: tuple[TestClient, dict[str, str]], gpu: float, fragment: str) -> None:
    c, h = api
    make_pool(c, h)
    r = c.post("/v1/workloads", json={"name": "w", "demand": {"vcpu": 1, "gpu": gpu}}, headers=h)
    assert r.status_code == 422 and fragment in r.text, r.text
