"""The one retry mechanism (store/retry.py): what it retries, how long, and what it raises."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from poolvisor.domain.errors import ConflictError, InvalidInputError
from poolvisor.store import Stale, open_store, with_retry
from poolvisor.store.rows import PoolRow


def test_with_retry_runs_the_step_again_until_it_does_not_lose() -> None:
    calls: list[float] = []

    def step() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise Stale()
        return "done"

    assert with_retry(step, deadline_s=5, conflict="x") == "done"
    assert len(calls) == 4
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert all(g >= 0.0005 for g in gaps), gaps  # a pause between attempts (first_s/2 at least)


def test_with_retry_raises_the_declared_conflict_at_the_deadline() -> None:
    calls = []

    def always() -> None:
        calls.append(1)
        raise Stale()

    t0 = time.monotonic()
    with pytest.raises(ConflictError, match="the thing was not done, retry") as e:
        with_retry(always, deadline_s=0.2, conflict="the thing was not done, retry", cap_s=0.01)
    took = time.monotonic() - t0
    assert e.value.status_code == 409 and 0.2 <= took < 2.0 and len(calls) > 5


def test_with_retry_lets_every_other_error_through_at_once() -> None:
    calls = []

    def wrong() -> None:
        calls.append(1)
        raise InvalidInputError("bad")

    with pytest.raises(InvalidInputError):
        with_retry(wrong, deadline_s=5, conflict="x")
    assert calls == [1]


def test_a_transient_database_conflict_is_stale_once_and_retried_by_run(tmp_path) -> None:
    store = open_store(str(tmp_path / "t.db"))
    calls = []

    def busy_then_ok(s):
        calls.append(1)
        s.add(PoolRow(name=f"p{len(calls)}", description=""))
        if len(calls) == 1:
            raise OperationalError("INSERT ...", {}, Exception("database is locked"))
        return len(calls)

    with pytest.raises(Stale):
        store.run_once(busy_then_ok)
    assert store.run(busy_then_ok) == 2
    assert store.run(lambda s: s.scalars(select(PoolRow.name)).all(), write=False) == ["p2"]
    store.close()
