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
@pytest.mark.parametrize("async_reader", [True, False])
def test_the_token_check_waits_on_postgresql_off_the_event_loop(
        db: str, async_reader: bool, pg_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL round trip can wait (a busy or unreachable server): the per-request token
    check is an asyncio read there (services/auth.py AsyncTokenReader), or, when that cannot
    answer, the blocking check in a worker thread; either way it never stalls the event loop. On
    SQLite (a WAL read that never waits on writers) it stays on the loop."""
    import asyncio

    from poolvisor.api import auth
    from poolvisor.services.auth import AsyncTokenReader

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

        async def cannot_answer(_self: Any, _d: str) -> tuple[bool, None]:
            return False, None

        monkeypatch.setattr(auth, "authenticate", spy)
        if not async_reader:
            monkeypatch.setattr(AsyncTokenReader, "lookup", cannot_answer)
        with TestClient(create_app(s)) as c:
            assert c.get("/v1/hosts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert c.get("/v1/hosts", headers={"Authorization": "Bearer pv_nope"}).status_code == 401
        assert on_loop == ([True, True] if db == "sqlite" else [] if async_reader else [False, False])
    finally:
        s.close()


@pytest.mark.real
def test_the_asyncio_token_read_lets_the_loop_serve_while_it_waits(pg_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a token check waiting for the database (here: the tokens table locked by
    another transaction) leaves the event loop free (/healthz answers meanwhile), and is
    answered once the database is (the lock released)."""
    import asyncio

    import httpx
    import psycopg

    s = open_services(pg_url)
    try:
        token = s.auth.bootstrap_admin_token()
        assert token is not None
        app = create_app(s)
        dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")

        async def scenario() -> tuple[int, int, bool]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                auth_h = {"Authorization": f"Bearer {token}"}
                assert (await c.get("/v1/whoami", headers=auth_h)).status_code == 200  # connected
                with psycopg.connect(dsn) as locker:
                    locker.execute("LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE")
                    waiting = asyncio.ensure_future(c.get("/v1/whoami", headers=auth_h))
                    await asyncio.sleep(0.3)
                    health = (await asyncio.wait_for(c.get("/healthz"), 5)).status_code
                    still_waiting = not waiting.done()
                    locker.rollback()
                answered = (await asyncio.wait_for(waiting, 10)).status_code
            return health, answered, still_waiting

        health, answered, still_waiting = asyncio.run(scenario())
        assert (health, answered, still_waiting) == (200, 200, True)
        # a read that outlasts TIMEOUT_S gives its connection up and goes the thread path
        from poolvisor.api import auth
        from poolvisor.services.auth import AsyncTokenReader

        in_thread: list[bool] = []
        real = auth.authenticate
        monkeypatch.setattr(auth, "authenticate",
                            lambda svc, tok: (in_thread.append(True), real(svc, tok))[1])
        monkeypatch.setattr(AsyncTokenReader, "TIMEOUT_S", 0.1)
        health, answered, still_waiting = asyncio.run(scenario())
        assert (health, answered, in_thread) == (200, 200, [True])
    finally:
        s.close()
