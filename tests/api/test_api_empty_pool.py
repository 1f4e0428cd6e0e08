"""A batch into a pool without hosts is a plan with nothing placed (409), not an internal error."""

from __future__ import annotations

from typing import Any


def test_batch_into_an_empty_pool(client: Any, admin: dict[str, str]) -> None:
    assert client.post("/v1/pools", json={"name": "empty"}, headers=admin).status_code == 201
    body = {"pool": "empty", "workloads": [{"name": "a", "flavor": "tiny"}, {"name": "b", "flavor": "tiny"}]}
    for dry in ("true", "false"):
        for all_or_nothing in (True, False):
            r = client.post(f"/v1/workloads/batch?dry_run={dry}",
                            json={**body, "all_or_nothing": all_or_nothing}, headers=admin)
            assert r.status_code == 409 and r.json()["error"] == "no_valid_host", r.text
            assert [m["to"] for m in r.json()["detail"]["moves"]] == [None, None]
