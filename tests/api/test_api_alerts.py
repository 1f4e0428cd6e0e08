"""/v1/alerts: list (filters), show, acknowledge; scoped per caller; declared errors; in /metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from poolvisor.services import Services


@pytest.fixture
def alerts(svc: Services) -> dict[str, int]:
    """A fleet alert (host down) and a project alert (quota, project acme); their ids."""
    svc.catalog.create_project("acme")
    svc.catalog.create_project("globex")
    svc.sim.fail_host(svc.hosts.list_hosts()[0].name)
    svc.alerts.quota_source = lambda: [("acme", {"vcpu": 99.0}, {"vcpu": 100.0})]
    svc.alerts.evaluate()
    by = {a.rule: a.id for a in svc.alerts.list_alerts()}
    return {"host": by["host_down"], "quota": by["quota_nearly_exhausted"]}


def test_admin_lists_and_acks(client: Any, admin: dict[str, str], alerts: dict[str, int]) -> None:
    r = client.get("/v1/alerts", headers=admin)
    assert r.status_code == 200 and {a["id"] for a in r.json()} == set(alerts.values())
    crit = client.get("/v1/alerts", headers=admin, params={"severity": "critical"}).json()
    assert {a["rule"] for a in crit} == {"host_down", "quota_nearly_exhausted"}
    only = client.get("/v1/alerts", headers=admin, params={"rule": "host_down"}).json()
    assert [a["id"] for a in only] == [alerts["host"]]
    assert [a["id"] for a in client.get("/v1/alerts", headers=admin, params={"project": "acme"}).json()] \
        == [alerts["quota"]]
    r = client.post(f"/v1/alerts/{alerts['host']}/ack", headers=admin)
    assert r.status_code == 200 and r.json()["acked_at"] and r.json()["acked_by"].startswith("admin-token-")
    shown = client.get(f"/v1/alerts/{alerts['host']}", headers=admin).json()
    assert shown["acked_at"] == r.json()["acked_at"]
    ev = client.get("/v1/events", headers=admin, params={"kind": "alert"}).json()
    assert {e["kind"] for e in ev} == {"alert.raised", "alert.acknowledged"}


def test_member_sees_and_acks_its_project_only(client: Any, member: Callable[[str], dict[str, str]],
                                               alerts: dict[str, int]) -> None:
    acme, globex = member("acme"), member("globex")
    assert [a["id"] for a in client.get("/v1/alerts", headers=acme).json()] == [alerts["quota"]]
    assert client.get("/v1/alerts", headers=globex).json() == []
    for path in (f"/v1/alerts/{alerts['quota']}", f"/v1/alerts/{alerts['host']}"):
        assert client.get(path, headers=globex).status_code == 404
        assert client.post(path + "/ack", headers=globex).status_code == 404
    assert client.get(f"/v1/alerts/{alerts['host']}", headers=acme).status_code == 404  # fleet: admins'
    assert client.get("/v1/alerts", headers=acme, params={"project": "globex"}).status_code == 404
    r = client.post(f"/v1/alerts/{alerts['quota']}/ack", headers=acme)
    assert r.status_code == 200 and r.json()["acked_by"].startswith("member-token-")
    evs = client.get("/v1/events", headers=acme, params={"kind": "alert"}).json()
    assert evs and {e["project"] for e in evs} == {"acme"}


def test_resolved_alert_ack_is_409(client: Any, admin: dict[str, str], svc: Services,
                                   alerts: dict[str, int]) -> None:
    svc.alerts.quota_source = None
    svc.alerts.evaluate()
    r = client.post(f"/v1/alerts/{alerts['quota']}/ack", headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    resolved = client.get("/v1/alerts", headers=admin, params={"state": "resolved"}).json()
    assert [a["id"] for a in resolved] == [alerts["quota"]] and resolved[0]["resolved_at"]
    assert len(client.get("/v1/alerts", headers=admin, params={"state": "all"}).json()) == 2


@pytest.mark.parametrize("path,status", [
    ("/v1/alerts/0", 422), ("/v1/alerts/-1", 422), ("/v1/alerts/abc", 422), ("/v1/alerts/1.5", 422),
    (f"/v1/alerts/{2**63}", 422), ("/v1/alerts/999999", 404), ("/v1/alerts?state=open", 422),
    ("/v1/alerts?severity=loud", 422), ("/v1/alerts?rule=nope", 422), ("/v1/alerts?limit=0", 422),
    ("/v1/alerts?project=..", 422), ("/v1/alerts?project=nope", 404),
])
def test_bad_requests(client: Any, admin: dict[str, str], path: str, status: int) -> None:
    r = client.get(path, headers=admin)
    assert r.status_code == status and r.json()["error"], r.text
    if path.startswith("/v1/alerts/") and "?" not in path:
        assert client.post(path + "/ack", headers=admin).status_code == status


def test_unauthenticated(client: Any, alerts: dict[str, int]) -> None:
    assert client.get("/v1/alerts").status_code == 401
    assert client.post(f"/v1/alerts/{alerts['host']}/ack").status_code == 401


def test_active_alerts_in_metrics(client: Any, admin: dict[str, str], member: Callable[[str], dict[str, str]],
                                  alerts: dict[str, int]) -> None:
    line = 'poolvisor_alerts_active{project="acme",rule="quota_nearly_exhausted",severity="critical"} 1.0'
    fleet = 'poolvisor_alerts_active{project="",rule="host_down",severity="critical"} 1.0'
    text = client.get("/metrics", headers=admin).text
    assert line in text and fleet in text
    text = client.get("/metrics", headers=member("acme")).text
    assert line in text and "host_down" not in text
    text = client.get("/metrics", headers=member("globex")).text
    assert "quota_nearly_exhausted" not in text
    assert "poolvisor_alerts_active" not in client.get("/metrics").text
