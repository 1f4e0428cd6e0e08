"""The HTTP contract of create and delete when the server's writer runs them (services/flow.py:
async routes awaiting the writer, as `poolvisor serve` runs them on SQLite): the workload and
quota suites run again here on Services with group commit and batched claims on, so every status
code, body, declared error and 429 with Retry-After must be what the thread-pool routes answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_quotas import (  # noqa: F401 - collected again here, on the fixtures below
    limited,
    test_rate_limit_429_with_retry_after,
)
from test_api_workloads import *  # noqa: F403 - every workload test, collected again here

from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'api.db'}")
    seed_demo(s, 6)
    assert s.store.start_group_commit() and s.workloads.start_batching()
    yield s
    s.close()


def test_the_routes_here_run_on_the_writer(client: Any, admin: dict[str, str], svc: Services) -> None:
    flows = svc.workloads.flows
    assert flows is not None
    r = client.post("/v1/workloads", json={"name": "w", "flavor": "small", "project": "demo"}, headers=admin)
    assert r.status_code == 201 and r.json()["state"] == "running"
    assert client.delete("/v1/workloads/w", params={"project": "demo"}, headers=admin).status_code == 204
    assert flows.inline_calls == 2  # the create's and the delete's driver calls: on the writer
    assert client.delete("/v1/workloads/w", params={"project": "demo"}, headers=admin).status_code == 404
    r = client.post("/v1/workloads", json={"name": "x", "flavor": "nope", "project": "demo"}, headers=admin)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
