"""Workloads through the API: placement with explanations, dry runs, project isolation, actions."""

from __future__ import annotations

from typing import Any

from taskwait import wait_task

from poolvisor.services import Services


def _allocated(svc: Services) -> dict[str, dict[str, float]]:
    return {h.name: dict(h.allocated) for h in svc.hosts.list_hosts()}


def test_create_places_and_explains(client: Any, admin: dict[str, str], svc: Services) -> None:
    body = {"name": "web1", "flavor": "medium", "project": "demo"}
    r = client.post("/v1/workloads", json=body, headers=admin)
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["state"] == "running" and w["host"] in {h.name for h in svc.hosts.list_hosts()}
    expl = w["explanation"]
    assert expl["hosts_considered"] == 6 and expl["candidates"] >= 1
    assert [f["filter"] for f in expl["filters"]] and expl["top"][0]["host"] == w["host"]
    assert svc.hosts.get_host(w["host"]).allocated["vcpu"] == 2
    got = client.get("/v1/workloads/web1", params={"project": "demo"}, headers=admin).json()
    assert got["host"] == w["host"]
    assert svc.repair.check().ok


def test_dry_run_allocates_nothing(client: Any, admin: dict[str, str], svc: Services) -> None:
    before = _allocated(svc)
    events = len(svc.events.list_events(limit=1000))
    r = client.post("/v1/workloads", params={"dry_run": "true"}, headers=admin,
                    json={"name": "probe", "flavor": "large", "project": "demo"})
    assert r.status_code == 200, r.text
    w = r.json()
    assert w["state"] == "dry-run" and w["host"] and w["explanation"]["top"]
    assert _allocated(svc) == before
    assert svc.workloads.list_workloads("demo") == []
    assert len(svc.events.list_events(limit=1000)) == events
    assert client.get("/v1/workloads/probe", params={"project": "demo"}, headers=admin).status_code == 404
    # the same name can then really be created
    assert client.post("/v1/workloads", json={"name": "probe", "flavor": "large", "project": "demo"},
                       headers=admin).status_code == 201


def test_no_valid_host_says_which_filters(client: Any, admin: dict[str, str], svc: Services) -> None:
    before = _allocated(svc)
    r = client.post("/v1/workloads", headers=admin,
                    json={"name": "whale", "demand": {"vcpu": 100000}, "project": "demo"})
    assert r.status_code == 409
    err = r.json()
    assert err["error"] == "no_valid_host" and "capacity" in err["message"]
    cap = next(f for f in err["detail"]["filters"] if f["filter"] == "capacity")
    assert cap["rejected"] == 6 and "vcpu" in cap["dominant_reason"]
    r = client.post("/v1/workloads", headers=admin,
                    json={"name": "gpu1", "demand": {"gpu": 1}, "required_labels": {"gpu": "nope"},
                          "project": "demo"})
    assert r.status_code == 409 and "labels" in r.json()["message"]
    assert _allocated(svc) == before and svc.workloads.list_workloads() == []


def test_workload_bad_input(client: Any, admin: dict[str, str]) -> None:
    bad = [
        {"name": "w", "flavor": "nope", "project": "demo"},  # 404 missing flavor
        {"name": "w", "flavor": "small", "project": "nope"},  # 404 missing project
        {"name": "w", "demand": {"quarks": 1}, "project": "demo"},  # unknown resource
        {"name": "w", "demand": {"vcpu": -2}, "project": "demo"},
        {"name": "w", "project": "demo"},  # neither flavor nor demand
        {"name": "w", "flavor": "small", "kind": "unikernel", "project": "demo"},
        {"name": "w" * 70, "flavor": "small", "project": "demo"},
        {"name": "w", "flavor": "small", "priority": 10**9, "project": "demo"},
    ]
    for body in bad:
        r = client.post("/v1/workloads", json=body, headers=admin)
        assert r.status_code in (404, 422), (body, r.status_code, r.text)
    assert client.post("/v1/workloads", json={"name": "w", "flavor": "small", "project": "demo"},
                       headers=admin).status_code == 201
    r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "project": "demo"}, headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "conflict"


def test_project_isolation(client: Any, admin: dict[str, str], member: Any, svc: Services) -> None:
    a, b = member("team-a"), member("team-b")
    assert client.post("/v1/workloads", json={"name": "a1", "flavor": "small"}, headers=a).status_code == 201
    assert client.post("/v1/workloads", json={"name": "b1", "flavor": "small"}, headers=b).status_code == 201
    # a member naming another project is refused as if it did not exist
    r = client.post("/v1/workloads", json={"name": "x", "flavor": "small", "project": "team-b"}, headers=a)
    assert r.status_code == 404
    assert [w["name"] for w in client.get("/v1/workloads", headers=a).json()] == ["a1"]
    assert client.get("/v1/workloads", params={"project": "team-b"}, headers=a).status_code == 404
    for method, path in (("get", "/v1/workloads/b1"), ("delete", "/v1/workloads/b1"),
                         ("post", "/v1/workloads/b1/stop"), ("post", "/v1/workloads/b1/migrate")):
        r = client.request(method, path, headers=a)
        assert r.status_code == 404, (method, path, r.text)
        r = client.request(method, path, params={"project": "team-b"}, headers=a)
        assert r.status_code == 404, (method, path, r.text)
    assert svc.workloads.get_workload("team-b", "b1").state == "running"
    # the admin sees both and finds a unique name without ?project=
    assert {w["name"] for w in client.get("/v1/workloads", headers=admin).json()} == {"a1", "b1"}
    assert client.get("/v1/workloads/b1", headers=admin).json()["project"] == "team-b"


def test_admin_default_project_and_ambiguous_names(client: Any, admin: dict[str, str], member: Any) -> None:
    r = client.post("/v1/workloads", json={"name": "same", "flavor": "tiny"}, headers=admin)
    assert r.status_code == 201 and r.json()["project"] == "default"
    assert client.post("/v1/workloads", json={"name": "same", "flavor": "tiny"},
                       headers=member("team-a")).status_code == 201
    r = client.get("/v1/workloads/same", headers=admin)
    assert r.status_code == 409 and "team-a" in r.json()["message"]
    assert client.get("/v1/workloads/same", params={"project": "team-a"}, headers=admin).status_code == 200
    assert client.get("/v1/workloads/ghost", headers=admin).status_code == 404


def test_actions_migrate_delete(client: Any, admin: dict[str, str], svc: Services) -> None:
    q = {"project": "demo"}
    w = client.post("/v1/workloads", json={"name": "vm1", "flavor": "small", "project": "demo"},
                    headers=admin).json()
    for action, state in (("stop", "stopped"), ("start", "running"), ("suspend", "suspended"),
                          ("resume", "running")):
        r = client.post(f"/v1/workloads/vm1/{action}", params=q, headers=admin)
        assert r.status_code == 200 and r.json()["state"] == state, (action, r.text)
    r = client.post("/v1/workloads/vm1/resume", params=q, headers=admin)  # already running
    assert r.status_code == 409, r.text
    target = next(h.name for h in svc.hosts.list_hosts() if h.name != w["host"])
    r = client.post("/v1/workloads/vm1/migrate", params=q, json={"host": target}, headers=admin)
    task = wait_task(client, admin, r)
    assert task["state"] == "succeeded" and task["result"]["to"] == target, task
    assert client.get("/v1/workloads/vm1", params=q, headers=admin).json()["host"] == target
    assert svc.hosts.get_host(w["host"]).allocated["vcpu"] == 0
    r = client.post("/v1/workloads/vm1/migrate", params=q, json={"host": "nope"}, headers=admin)
    assert r.status_code == 404
    task = wait_task(client, admin, client.post("/v1/workloads/vm1/migrate", params=q, headers=admin))
    assert task["state"] == "succeeded" and task["progress"] == 1 and task["result"]["from"] == target, task
    # a host holding a workload cannot be deleted
    host = svc.workloads.get_workload("demo", "vm1").host
    assert client.delete(f"/v1/hosts/{host}", headers=admin).status_code == 409
    assert client.delete("/v1/workloads/vm1", params=q, headers=admin).status_code == 204
    assert client.get("/v1/workloads/vm1", params=q, headers=admin).status_code == 404
    assert all(v == 0 for h in svc.hosts.list_hosts() for v in h.allocated.values())
    assert svc.repair.check().ok


def test_failed_host_loses_its_workloads(sim_client: Any, admin: dict[str, str], svc: Services) -> None:
    client = sim_client  # fault injection is the sim admin extension's (serve --demo / --sim-admin)
    w = client.post("/v1/workloads", json={"name": "doomed", "flavor": "small", "project": "demo"},
                    headers=admin).json()
    r = client.post(f"/v1/sim/hosts/{w['host']}/fail", headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "down"
    assert svc.workloads.get_workload("demo", "doomed").state == "lost"
    assert client.post("/v1/sim/hosts/nope/fail", headers=admin).status_code == 404
    assert svc.repair.check().ok


def test_a_workload_whose_explanation_has_no_placement_decision_is_listed(
        client: Any, admin: dict[str, str], svc: Services) -> None:
    """HA's "restart on h failed" (and any writer without a decision) stores a bare explanation:
    GET /v1/workloads served 500 for the whole listing; it must render every such workload."""
    from sqlalchemy import update

    from poolvisor.store.rows import WorkloadRow

    client.post("/v1/workloads", json={"name": "bare", "flavor": "small", "project": "demo"}, headers=admin)
    svc.ctx.write(lambda s: s.execute(update(WorkloadRow).where(WorkloadRow.name == "bare").values(
        explanation={"rule": "ha: waiting for restart: restart on h1 failed", "ha": {"pending": True}})))
    r = client.get("/v1/workloads", params={"project": "demo"}, headers=admin)
    assert r.status_code == 200, r.text
    got = {w["name"]: w for w in r.json()}["bare"]["explanation"]
    assert got["rule"].startswith("ha: waiting") and got["hosts_considered"] == 0 and got["filters"] == []
    assert client.get("/v1/workloads/bare", params={"project": "demo"}, headers=admin).status_code == 200


def test_explain_full_on_request_summary_by_default(client: Any, admin: dict[str, str],
                                                    svc: Services) -> None:
    body = {"name": "ex1", "flavor": "small", "project": "demo"}
    r = client.post("/v1/workloads", params={"dry_run": "true", "explain": "full"}, json=body, headers=admin)
    assert r.status_code == 200, r.text
    full = r.json()["explanation"]
    assert full["detail"] == "full" and "capacity" in [f["filter"] for f in full["filters"]]
    r = client.post("/v1/workloads", params={"dry_run": "true"}, json=body, headers=admin)
    summary = r.json()["explanation"]
    assert summary["detail"] == "summary" and summary["path"] == "index"
    assert summary["top"] == full["top"] and summary["candidates"] == full["candidates"]
    r = client.post("/v1/workloads", params={"explain": "everything"}, json=body, headers=admin)
    assert r.status_code == 422 and svc.workloads.list_workloads() == []
