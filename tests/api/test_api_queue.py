"""`wait: true` through the API: 202 with the queue entry, listed per project, created by the
queue loop when capacity frees; cancel; the pool's discipline (admins); the depth gauge."""

from __future__ import annotations

import time
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
    s.catalog.create_pool("p")
    s.hosts.create_host("h0", {"vcpu": 1, "memory_mib": 1024}, pool="p")
    s.catalog.create_project("demo")
    s.catalog.create_project("other")
    yield s
    s.close()


@pytest.fixture
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc, queue_interval=0.05), raise_server_exceptions=False) as c:
        yield c


def test_wait_queues_then_the_loop_creates_it(client: Any, admin: dict[str, str],
                                              member: Callable[[str], dict[str, str]], svc: Services) -> None:
    m = member("demo")
    body = {"demand": UNIT, "pool": "p", "wait": True}
    r = client.post("/v1/workloads", json={"name": "first", **body}, headers=m)
    assert r.status_code == 201, r.text  # it fits: created at once
    r = client.post("/v1/workloads", json={"name": "second", "priority_class": "low", "duration_s": 60,
                                           **body}, headers=m)
    assert r.status_code == 202, r.text
    q = r.json()
    assert q["name"] == "second" and q["priority_class"] == "low" and q["duration_s"] == 60
    assert [x["name"] for x in client.get("/v1/queue", headers=m).json()] == ["second"]
    assert client.get("/v1/queue", headers=member("other")).json() == []  # another project's: invisible
    metrics = client.get("/metrics", headers=admin).text
    assert 'poolvisor_queue_depth{priority_class="low"} 1.0' in metrics
    # without wait, the usual 409
    r = client.post("/v1/workloads", json={"name": "third", "demand": UNIT, "pool": "p"}, headers=m)
    assert r.status_code == 409
    assert client.delete("/v1/workloads/first", headers=m).status_code == 204
    deadline = time.monotonic() + 10
    while client.get("/v1/queue", headers=m).json() and time.monotonic() < deadline:
        time.sleep(0.05)
    w = client.get("/v1/workloads/second", headers=m).json()
    assert w["state"] == "running" and w["priority_class"] == "low"


def test_cancel_and_discipline(client: Any, admin: dict[str, str],
                               member: Callable[[str], dict[str, str]], svc: Services) -> None:
    m = member("demo")
    svc.workloads.create_workload("demo", "full", demand=UNIT, pool="p")
    r = client.post("/v1/workloads", json={"name": "w", "demand": UNIT, "pool": "p", "wait": True}, headers=m)
    assert r.status_code == 202
    assert client.delete("/v1/queue/w", headers=member("other")).status_code == 404
    assert client.delete("/v1/queue/w", headers=m).status_code == 204
    assert client.get("/v1/queue", headers=m).json() == []
    assert client.delete("/v1/queue/w", headers=m).status_code == 404
    r = client.put("/v1/pools/p/queue-discipline", json={"discipline": "drf"}, headers=admin)
    assert r.status_code == 200 and r.json() == {"pool": "p", "discipline": "drf"}
    assert client.put("/v1/pools/p/queue-discipline", json={"discipline": "lottery"},
                      headers=admin).status_code == 422
    assert client.put("/v1/pools/p/queue-discipline", json={"discipline": "fifo"},
                      headers=m).status_code == 403
    assert client.put("/v1/pools/nope/queue-discipline", json={"discipline": "fifo"},
                      headers=admin).status_code == 404
