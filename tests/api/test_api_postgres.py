"""The API on the real PostgreSQL fixture (tests/pg.py): auth, placement, isolation, bad input."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from poolvisor.api.app import create_app
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def pg_services(pg_url: str) -> Iterator[Services]:
    s = open_services(pg_url)
    seed_demo(s, 4)
    yield s
    s.close()


@pytest.mark.real
def test_api_on_postgres(pg_services: Services) -> None:
    token = pg_services.auth.bootstrap_admin_token()
    assert token is not None
    admin = {"Authorization": f"Bearer {token}"}
    member = {"Authorization": f"Bearer {pg_services.auth.create_token('member', 'demo')}"}
    c: Any
    with TestClient(create_app(pg_services), raise_server_exceptions=False) as c:
        assert c.get("/v1/hosts").status_code == 401
        assert len(c.get("/v1/hosts", headers=admin).json()) == 4
        r = c.post("/v1/workloads", params={"dry_run": "true"}, json={"name": "w", "flavor": "small"},
                   headers=member)
        assert r.status_code == 200 and r.json()["state"] == "dry-run"
        assert all(v == 0 for h in pg_services.hosts.list_hosts() for v in h.allocated.values())
        r = c.post("/v1/workloads", json={"name": "w", "flavor": "small"}, headers=member)
        assert r.status_code == 201 and r.json()["project"] == "demo"
        again = c.post("/v1/workloads", json={"name": "w", "flavor": "small"}, headers=member)
        assert again.status_code == 409
        assert c.post("/v1/workloads", json={"name": "q", "demand": {"vcpu": -1}},
                      headers=member).status_code == 422
        assert c.post("/v1/hosts", json={"name": "h" * 64, "capacity": {"vcpu": 1}},
                      headers=admin).status_code == 422
        r = c.post("/v1/workloads", json={"name": "z", "demand": {"vcpu": 10**6}}, headers=member)
        assert r.status_code == 409 and r.json()["error"] == "no_valid_host"
        assert c.post("/v1/pools", json={"name": "p"}, headers=member).status_code == 403
        assert [w["name"] for w in c.get("/v1/workloads", headers=admin).json()] == ["w"]
        assert c.delete("/v1/workloads/w", headers=member).status_code == 204
    assert pg_services.repair.check().ok


@pytest.mark.real
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_the_token_check_waits_on_postgresql_off_the_event_loop(
        db: str, pg_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL round trip can wait (a busy or unreachable server): the per-request token
    check runs in a worker thread there, so it never stalls the event loop; on SQLite (a WAL read
    that never waits on writers) it stays on the loop."""
    import asyncio

    from poolvisor.api import auth

    s = open_services(pg_url if db == "postgresql" else f"sqlite:///{tmp_path / 'a.db'}")
    try:
        token = s.auth.bootstrap_admin_token()
        assert token is not None
        on_loop: list[bool] = []
        real = auth.authenticate

        def spy(svc: Services, tok: str | None) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop.append(True)
            except RuntimeError:
                on_loop.append(False)
            return real(svc, tok)

        monkeypatch.setattr(auth, "authenticate", spy)
        with TestClient(create_app(s)) as c:
            assert c.get("/v1/hosts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert on_loop == [db == "sqlite"]
    finally:
        s.close()
