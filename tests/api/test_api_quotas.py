"""Quotas and rate limits through the API: admins set them, the project's tokens read them, creation
over a quota is a declared 403 `quota_exceeded`, over the rate a declared 429 with a correct
`Retry-After`."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolvisor.api.app import create_app
from poolvisor.api.openapi import depends_on, operations
from poolvisor.api.ratelimit import RateLimiter, TokenBucket, rate_limiter
from poolvisor.domain.errors import RateLimitedError
from poolvisor.services import Services
from poolvisor.services.quotas import RateLimit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quota_set_read_and_enforced(client: Any, admin: dict[str, str],
                                     member: Callable[[str], dict[str, str]]) -> None:
    r = client.put("/v1/projects/demo/quota", json={"limits": {"vcpu": 2, "workloads": 5},
                                                    "rate_limit": {"rate_per_s": 5, "burst": 10}},
                   headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["limits"] == {"vcpu": 2, "workloads": 5}
    assert r.json()["rate_limit"] == {"rate_per_s": 5, "burst": 10}
    m = member("demo")
    assert client.get("/v1/projects/demo/quota", headers=m).json()["limits"] == {"vcpu": 2, "workloads": 5}
    assert client.put("/v1/projects/demo/quota", json={"limits": {}}, headers=m).status_code == 403
    other = member("team-x")
    assert client.get("/v1/projects/demo/quota", headers=other).status_code == 404
    assert client.get("/v1/projects/demo/usage", headers=other).status_code == 404
    for i in range(2):
        assert client.post("/v1/workloads", json={"name": f"w{i}", "flavor": "small"},
                           headers=m).status_code == 201
    r = client.post("/v1/workloads", json={"name": "w2", "flavor": "small"}, headers=m)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "quota_exceeded"
    assert r.json()["detail"] == {"project": "demo", "resource": "vcpu", "used": 2, "requested": 1,
                                  "limit": 2}
    u = client.get("/v1/projects/demo/usage", headers=m).json()
    assert u["used"]["vcpu"] == 2 and u["used"]["workloads"] == 2 and u["available"] == {"vcpu": 0,
                                                                                         "workloads": 3}
    r = client.post("/v1/workloads/batch", json={"project": "demo", "workloads": [
        {"name": "b1", "flavor": "small"}]}, headers=admin)
    assert r.status_code == 403 and r.json()["error"] == "quota_exceeded"
    for body in ({"limits": {"unobtainium": 1}}, {"limits": {"vcpu": -1}}, {"limits": {"workloads": 1.5}},
                 {"rate_limit": {"rate_per_s": 0, "burst": 1}}, {"rate_limit": {"rate_per_s": 1}},
                 {"limits": {"vcpu": "2"}}, {"extra": 1}):
        assert client.put("/v1/projects/demo/quota", json=body, headers=admin).status_code == 422, body
    assert client.put("/v1/projects/nope/quota", json={}, headers=admin).status_code == 404
    assert client.put("/v1/projects/demo/quota", json={}, headers=admin).json()["limits"] == {}
    assert client.post("/v1/workloads", json={"name": "w2", "flavor": "small"}, headers=m).status_code == 201


def test_token_bucket_arithmetic() -> None:
    b = TokenBucket.full(RateLimit(0.5, 2), 0.0)
    assert b.take(0.0) == 0.0 and b.take(0.0) == 0.0
    assert b.take(0.0) == pytest.approx(2.0)  # empty: one token in 1 / 0.5 s
    assert b.take(1.0) == pytest.approx(1.0)  # half a token refilled, and a failed take costs nothing
    assert b.take(2.0) == 0.0
    assert b.take(100.0) == 0.0 and b.tokens == pytest.approx(1.0)  # refill is capped at the burst


@pytest.fixture
def limited(svc: Services) -> Iterator[tuple[TestClient, FakeClock]]:
    """An app whose default limit is 0.5 creation requests/s with a burst of 2, on a fake clock."""
    clock = FakeClock()
    app = create_app(svc, rate_limit=RateLimit(0.5, 2))
    app.state.rate_limiter = RateLimiter(RateLimit(0.5, 2), svc.quotas.rate_limits, clock=clock, refresh_s=1)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, clock


def test_rate_limit_429_with_retry_after(limited: tuple[TestClient, FakeClock], admin: dict[str, str],
                                         member: Callable[[str], dict[str, str]]) -> None:
    c, clock = limited
    m = member("demo")
    assert c.post("/v1/workloads", json={"name": "bad!"}, headers=m).status_code == 422  # costs nothing
    assert c.post("/v1/workloads", json={"name": "a", "flavor": "small"}).status_code == 401
    assert c.post("/v1/workloads", json={"name": "a", "flavor": "small"}, headers=m).status_code == 201
    assert c.post("/v1/workloads?dry_run=true", json={"name": "b", "flavor": "small"},
                  headers=m).status_code == 200
    r = c.post("/v1/workloads", json={"name": "b", "flavor": "small"}, headers=m)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2", r.text
    assert r.json()["error"] == "rate_limited" and r.json()["detail"]["retry_after"] == 2
    clock.now += 1.5  # 0.75 tokens: a token in 0.5 s -> Retry-After rounds up to 1
    r = c.post("/v1/workloads/batch", json={"workloads": [{"name": "b", "flavor": "small"}]}, headers=m)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    clock.now += 1  # the Retry-After was right: a token is there
    assert c.post("/v1/workloads", json={"name": "b", "flavor": "small"}, headers=m).status_code == 201
    # other projects have their own bucket; reads are never limited
    assert c.post("/v1/workloads", json={"name": "c", "flavor": "small"},
                  headers=member("other")).status_code == 201
    assert c.get("/v1/workloads", headers=m).status_code == 200
    # a project's own limit overrides the default (read again after refresh_s)
    assert c.put("/v1/projects/demo/quota", json={"rate_limit": {"rate_per_s": 100, "burst": 3}},
                 headers=admin).status_code == 200
    clock.now += 1
    for i in range(3):
        r = c.post("/v1/workloads", json={"name": f"d{i}", "flavor": "small"}, headers=m)
        assert r.status_code == 201
    r = c.post("/v1/workloads", json={"name": "d3", "flavor": "small"}, headers=m)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"


def test_retry_after_is_honest_on_the_real_clock(svc: Services,
                                                 member: Callable[[str], dict[str, str]]) -> None:
    with TestClient(create_app(svc, rate_limit=RateLimit(2, 1)), raise_server_exceptions=False) as c:
        m = member("demo")
        assert c.post("/v1/workloads", json={"name": "a", "flavor": "small"}, headers=m).status_code == 201
        r = c.post("/v1/workloads", json={"name": "b", "flavor": "small"}, headers=m)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        time.sleep(int(r.headers["Retry-After"]))
        assert c.post("/v1/workloads", json={"name": "b", "flavor": "small"}, headers=m).status_code == 201


def test_openapi_declares_429_and_403_where_they_can_happen() -> None:
    app = create_app(cast(Services, None))
    doc = app.openapi()
    limited = [r for r in operations(app) if depends_on(r.dependant, rate_limiter)]
    assert {r.path for r in limited} == {"/v1/workloads", "/v1/workloads/batch"}
    for r in limited:
        for m in r.methods:
            resp = doc["paths"][r.path][m.lower()]["responses"]
            assert resp["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
            assert resp["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path.startswith("/v1") and method in ("post", "put", "patch", "delete"):
                assert "403" in op["responses"], (method, path)


def test_the_limiter_forgets_refilled_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    from poolvisor.api import ratelimit

    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 3)
    clock = FakeClock()
    lim = RateLimiter(RateLimit(1, 1), dict, clock=clock)
    for p in ("a", "b", "c"):
        lim.check(p)
    assert len(lim) == 3
    clock.now += 0.5  # nothing refilled yet: every bucket still matters
    lim.check("d")
    assert len(lim) == 4
    clock.now += 1  # a, b, c and d are full again: forgetting them changes nothing
    lim.check("e")
    assert len(lim) == 1
    with pytest.raises(RateLimitedError):
        lim.check("e")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(rate=st.floats(0.01, 1000), burst=st.integers(1, 50),
       gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60))
def test_token_bucket_admits_at_most_burst_plus_rate_and_its_wait_is_exact(
        rate: float, burst: int, gaps: list[float]) -> None:
    b = TokenBucket.full(RateLimit(rate, burst), 0.0)
    now, admitted = 0.0, []
    for g in gaps:
        now += g
        probe = TokenBucket(b.limit, b.tokens, b.at)
        wait = b.take(now)
        if wait == 0.0:
            admitted.append(now)
            continue
        # the wait is exact: a moment earlier there is still no token, at that time there is one
        early = TokenBucket(probe.limit, probe.tokens, probe.at)
        assert early.take(now + wait * (1 - 1e-6)) > 0
        assert TokenBucket(probe.limit, probe.tokens, probe.at).take(now + wait * (1 + 1e-9) + 1e-12) == 0.0
    for i, t0 in enumerate(admitted):  # any window admits at most burst + rate * its length
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + rate * (admitted[j] - t0) + 1e-6
