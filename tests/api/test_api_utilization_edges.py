"""Utilization reads through the API at the edges: a grid or a declared 4xx, never a 500."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _one_sample(client: Any, admin: dict[str, str]) -> None:
    r = client.post("/v1/workloads", json={"name": "u1", "flavor": "tiny"}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post("/v1/utilization", json={"samples": [{"workload": "u1", "time": 1700000000, "cpu": 0.5}]},
                    headers=admin)
    assert r.status_code == 201, r.text


def test_since_after_the_last_sample_is_422(client: Any, admin: dict[str, str]) -> None:
    _one_sample(client, admin)
    r = client.get("/v1/workloads/u1/utilization", params={"since": "2024-01-01T00:00:00"}, headers=admin)
    assert r.status_code == 422, r.text
    assert "nothing recorded since 2024-01-01T00:00:00Z" in r.json()["message"]
    r = client.get("/v1/workloads/u1/utilization", params={"since": "2023-11-14T22:00:00"}, headers=admin)
    assert r.status_code == 200 and r.json()["cpu"] == [0.5] * 3  # 22:00, 22:05, 22:10


ISO = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1)).map(datetime.isoformat)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=st.none() | ISO | st.sampled_from(["2023-11-14T22:13:20Z", "2023-11-14T22:13:21Z"]),
       until=st.none() | ISO, steps=st.none() | st.integers(-1, 10_001),
       interval=st.none() | st.sampled_from([1, 300, 604800, 0.5, 604801]) | st.floats(1, 604800))
def test_any_window_is_a_grid_or_a_4xx(client: Any, admin: dict[str, str], since: str | None,
                                       until: str | None, steps: int | None, interval: float | None) -> None:
    if client.get("/v1/workloads/u1", headers=admin).status_code == 404:
        _one_sample(client, admin)
    params = {k: v for k, v in {"since": since, "until": until, "steps": steps, "interval": interval}.items()
              if v is not None}
    r = client.get("/v1/workloads/u1/utilization", params=params, headers=admin)
    assert r.status_code in (200, 422), (params, r.text)
    if r.status_code == 200:
        out = r.json()
        assert out["cpu"] and all(x == 0.5 for x in out["cpu"])
        assert steps is None or len(out["cpu"]) == steps
    else:
        assert r.json()["error"] == "invalid_input"
