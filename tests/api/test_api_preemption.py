"""Priority classes and preemption through the API: the class is stored and shown, a higher class
evicts a spot workload (201, explanation lists it), the victim shows why; bad classes are 422 and
class system is for admins."""

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

UNIT = {"vcpu": 1, "memory_mib": 1024}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'api.db'}")
    s.hosts.create_host("h0", {"vcpu": 2, "memory_mib": 2048})
    s.catalog.create_project("demo")
    yield s
    s.close()


def create(client: Any, headers: dict[str, str], name: str, cls: str, **extra: Any) -> Any:
    return client.post("/v1/workloads", json={"name": name, "demand": UNIT, "priority_class": cls, **extra},
                       headers=headers)


def test_high_class_preempts_spot(client: Any, admin: dict[str, str],
                                  member: Callable[[str], dict[str, str]]) -> None:
    m = member("demo")
    for i, c in enumerate(("spot", "low")):
        r = create(client, m, f"f{i}", c)
        assert r.status_code == 201 and r.json()["priority_class"] == c, r.text
    r = create(client, m, "hi", "high")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["priority_class"] == "high" and body["host"] == "h0"
    assert body["explanation"]["preempted"] == [{"workload": "demo/f0", "class": "spot", "was": "running"}]
    v = client.get("/v1/workloads/f0", headers=m).json()
    assert v["state"] == "preempted" and v["host"] is None and "demo/hi" in v["state_reason"]
    events = client.get("/v1/events", params={"project": "demo"}, headers=admin).json()
    assert any(e["kind"] == "workload.preempted" and e["subject"] == "workload/demo/f0" for e in events)
    # a request that cannot preempt anything is the usual declared 409
    r = create(client, m, "sp", "spot")
    assert r.status_code == 409 and r.json()["error"] == "no_valid_host"
    assert client.delete("/v1/workloads/f0", headers=m).status_code == 204


def test_bad_class_is_422_and_system_needs_admin(client: Any, admin: dict[str, str],
                                                 member: Callable[[str], dict[str, str]]) -> None:
    m = member("demo")
    r = create(client, m, "x", "urgent")
    assert r.status_code == 422
    r = create(client, m, "x", "system")
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = create(client, admin, "x", "system", project="demo")
    assert r.status_code == 201 and r.json()["priority_class"] == "system"


@pytest.fixture
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc), raise_server_exceptions=False) as c:
        yield c
