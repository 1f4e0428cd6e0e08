"""Token expiry and revocation through the API, on two app instances sharing one database (two
`serve` replicas): a revocation or an expiry is refused at once by both."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from poolvisor.api.app import create_app
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services
from poolvisor.store.rows import TokenRow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def replicas(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[Any, Any, str, Services]]:
    """Two app instances, each with its own Services (engine, pool), on one database; admin token."""
    url = (f"sqlite:///{tmp_path / 'shared.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    a, b = open_services(url), open_services(url)
    seed_demo(a, 3)
    token = a.auth.bootstrap_admin_token()
    assert token is not None
    try:
        with TestClient(create_app(a), raise_server_exceptions=False) as ca, \
                TestClient(create_app(b), raise_server_exceptions=False) as cb:
            yield ca, cb, token, a
    finally:
        a.close()
        b.close()


def test_revocation_holds_at_once_on_the_other_replica(replicas: Any) -> None:
    ca, cb, admin, _svc = replicas
    r = ca.post("/v1/tokens", json={"role": "member", "project": "demo", "label": "ci"},
                headers=bearer(admin))
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["label"] == "ci" and new["expires_at"] is None and new["project"] == "demo"
    for c in (ca, cb):
        assert c.get("/v1/workloads", headers=bearer(new["token"])).status_code == 200
    assert ca.delete(f"/v1/tokens/{new['id']}", headers=bearer(admin)).status_code == 204
    for c in (cb, ca):  # no grace period, no cache: the very next request is refused
        r = c.get("/v1/workloads", headers=bearer(new["token"]))
        assert r.status_code == 401 and r.json()["message"] == "bearer token revoked", r.text
    assert ca.delete(f"/v1/tokens/{new['id']}", headers=bearer(admin)).status_code == 204  # idempotent
    listed = {t["id"]: t for t in cb.get("/v1/tokens", headers=bearer(admin)).json()}
    assert listed[new["id"]]["state"] == "revoked" and listed[new["id"]]["revoked_at"]
    assert listed[new["id"]]["hint"] == new["token"][:7] and "token" not in listed[new["id"]]
    kinds = [e["kind"] for e in cb.get("/v1/events", headers=bearer(admin)).json()]
    assert "token.revoked" in kinds and "token.created" in kinds


def test_expiry_holds_on_both_replicas(replicas: Any) -> None:
    ca, cb, admin, _svc = replicas
    r = ca.post("/v1/tokens", json={"role": "admin", "expires_in": 2}, headers=bearer(admin))
    assert r.status_code == 201
    short = r.json()
    assert short["expires_at"] is not None
    who = cb.get("/v1/whoami", headers=bearer(short["token"])).json()
    assert who["role"] == "admin" and who["token_id"] == short["id"] and who["expires_at"]
    time.sleep(2.2)
    for c in (ca, cb):
        r = c.get("/v1/whoami", headers=bearer(short["token"]))
        assert r.status_code == 401 and r.json()["message"] == "bearer token expired"
    states = {t["id"]: t["state"] for t in ca.get("/v1/tokens", headers=bearer(admin)).json()}
    assert states[short["id"]] == "expired"


def test_members_manage_their_own_projects_tokens_only(client: Any, admin: dict[str, str],
                                                       member: Any) -> None:
    a1, b1 = member("team-a"), member("team-b")
    r = client.post("/v1/tokens", json={"label": "bot"}, headers=a1)  # member token of team-a by default
    assert r.status_code == 201 and (r.json()["role"], r.json()["project"]) == ("member", "team-a")
    a2 = r.json()
    assert client.post("/v1/tokens", json={"role": "admin"}, headers=a1).status_code == 403
    assert client.post("/v1/tokens", json={"project": "team-b"}, headers=a1).status_code == 404
    mine = client.get("/v1/tokens", headers=a1).json()
    assert {t["project"] for t in mine} == {"team-a"} and len(mine) == 2
    assert client.get("/v1/tokens", params={"project": "team-b"}, headers=a1).status_code == 404
    b_ids = [t["id"] for t in client.get("/v1/tokens", params={"project": "team-b"}, headers=admin).json()]
    assert b_ids and client.delete(f"/v1/tokens/{b_ids[0]}", headers=a1).status_code == 404
    admin_id = client.get("/v1/whoami", headers=admin).json()["token_id"]
    assert client.delete(f"/v1/tokens/{admin_id}", headers=a1).status_code == 404  # invisible
    assert client.get("/v1/whoami", headers=b1).status_code == 200  # untouched
    assert client.delete(f"/v1/tokens/{a2['id']}", headers=a1).status_code == 204
    assert client.get("/v1/whoami", headers=bearer(a2["token"])).status_code == 401
    everything = client.get("/v1/tokens", headers=admin).json()
    assert {t["project"] for t in everything} == {None, "team-a", "team-b"}


def test_a_token_never_outlives_the_token_that_created_it(client: Any, admin: dict[str, str]) -> None:
    r = client.post("/v1/tokens", json={"role": "admin", "expires_in": 3600}, headers=admin)
    parent = r.json()
    assert client.post("/v1/tokens", json={"role": "admin", "expires_in": 7200},
                       headers=bearer(parent["token"])).status_code == 422
    child = client.post("/v1/tokens", json={"role": "admin"}, headers=bearer(parent["token"])).json()
    assert child["expires_at"] == parent["expires_at"]  # inherited, not "never"
    listed = {t["id"]: t for t in client.get("/v1/tokens", headers=admin).json()}
    assert listed[child["id"]]["created_by"] == parent["id"]


def test_the_last_valid_admin_token_cannot_be_revoked(client: Any, admin: dict[str, str]) -> None:
    me = client.get("/v1/whoami", headers=admin).json()["token_id"]
    r = client.delete(f"/v1/tokens/{me}", headers=admin)
    assert r.status_code == 409 and "last valid admin token" in r.json()["message"]
    short = client.post("/v1/tokens", json={"role": "admin", "expires_in": 1}, headers=admin).json()
    time.sleep(1.2)  # an expired admin token does not count as another admin
    assert client.delete(f"/v1/tokens/{me}", headers=admin).status_code == 409
    assert client.delete(f"/v1/tokens/{short['id']}", headers=admin).status_code == 204
    other = client.post("/v1/tokens", json={"role": "admin"}, headers=admin).json()
    assert client.delete(f"/v1/tokens/{me}", headers=bearer(other["token"])).status_code == 204
    assert client.get("/v1/whoami", headers=admin).status_code == 401


@pytest.mark.parametrize("body", [
    {"role": "member", "project": "demo", "expires_in": 0},
    {"role": "member", "project": "demo", "expires_in": -5},
    {"role": "member", "project": "demo", "expires_in": "60"},
    {"role": "member", "project": "demo", "expires_in": True},
    {"role": "member", "project": "demo", "expires_in": 1.5},
    {"role": "member", "project": "demo", "expires_in": 10**12},
    {"role": "member", "project": "demo", "label": "bad\u001b[2Jlabel"},
    {"role": "member", "project": "demo", "label": "x" * 64},
    {"role": "member", "project": "demo", "owner": "me"},
])
def test_bad_token_requests_are_422_and_mint_nothing(client: Any, admin: dict[str, str], svc: Services,
                                                     body: dict[str, Any]) -> None:
    before = len(svc.auth.list_tokens())
    r = client.post("/v1/tokens", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert len(svc.auth.list_tokens()) == before


@pytest.mark.parametrize("path,status", [
    ("/v1/tokens/0", 422), ("/v1/tokens/-1", 422), ("/v1/tokens/abc", 422), ("/v1/tokens/1.5", 422),
    (f"/v1/tokens/{2**31}", 422), ("/v1/tokens/999999", 404),
])
def test_revoking_a_bad_or_unknown_id(client: Any, admin: dict[str, str], path: str, status: int) -> None:
    r = client.delete(path, headers=admin)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "message", "detail", "request_id"}
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_tokens_are_stored_hashed(client: Any, admin: dict[str, str], svc: Services) -> None:
    tok = client.post("/v1/tokens", json={"role": "member", "project": "demo"}, headers=admin).json()["token"]
    stored = svc.store.run(lambda s: list(s.execute(select(TokenRow.digest, TokenRow.hint)).all()),
                           write=False)
    assert all(tok != d and tok not in d for d, _h in stored)
    assert all(len(h) <= 7 for _d, h in stored)
