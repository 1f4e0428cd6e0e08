"""GET /v1/controller, POST /v1/controller/pause|resume: admins only; the flag is in the store."""

from __future__ import annotations

from collections.abc import Callable

from poolvisor.services import Services


def test_status_pause_resume(client, admin: dict[str, str], svc: Services) -> None:
    r = client.get("/v1/controller", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["paused"] is False and body["policy"] == "adaptive" and body["last_round"] is None
    assert body["loop"] is None  # this app runs no loop (controller_interval None)
    r = client.post("/v1/controller/pause", headers=admin)
    assert r.status_code == 200 and r.json()["paused"] is True
    assert svc.controller.paused()  # in the store: every replica sees it
    assert client.get("/v1/controller", headers=admin).json()["changed_by"].startswith("token ")
    r = client.post("/v1/controller/resume", headers=admin)
    assert r.status_code == 200 and r.json()["paused"] is False
    svc.controller.reconcile()
    last = client.get("/v1/controller", headers=admin).json()["last_round"]
    assert last is not None and {"samples", "migrations", "held", "power", "imbalance"} <= set(last)


def test_only_admins_pause_and_members_see_their_own_moves(client, admin: dict[str, str], svc: Services,
                                                             member: Callable[[str], dict[str, str]]) -> None:
    m = member("demo")
    assert client.get("/v1/controller").status_code == 401
    assert client.post("/v1/controller/pause", headers=m).status_code == 403
    assert client.post("/v1/controller/resume", headers=m).status_code == 403
    svc.catalog.create_project("other")
    for p in ("demo", "other"):
        for i in range(3):
            svc.workloads.create_workload(p, f"w{i}", demand={"vcpu": 4, "memory_mib": 4096}, pool="demo")
    svc.controller.reconcile()
    every = client.get("/v1/controller", headers=admin).json()["last_round"]
    moved = {x["workload"].split("/")[0] for x in every["migrations"] + every["held"]}
    assert moved == {"demo", "other"}, every
    mine = client.get("/v1/controller", headers=m).json()["last_round"]
    assert {x["workload"].split("/")[0] for x in mine["migrations"] + mine["held"]} == {"demo"}


def test_the_loop_runs_in_the_app_lifespan(svc: Services, admin: dict[str, str]) -> None:
    import time
    import warnings

    from poolvisor.api.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    with TestClient(create_app(svc, controller_interval=1.0), raise_server_exceptions=False) as c:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            loop = c.get("/v1/controller", headers=admin).json()["loop"]
            if loop["rounds"] >= 1:
                break
            time.sleep(0.2)
        assert loop["running"] and loop["rounds"] >= 1 and loop["errors"] == 0, loop
