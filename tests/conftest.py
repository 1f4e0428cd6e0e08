"""Shared fixtures. Real components: skip with a reason locally, fail when POOLVISOR_REQUIRE_REAL=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED_DATA.exists():  # a clone elsewhere: allow pointing at the data explicitly
    SHARED_DATA = Path(os.environ.get("POOLVISOR_SHARED_DATA", str(SHARED_DATA)))


def require_real(available: bool, reason: str) -> None:
    """Skip (or, in CI with POOLVISOR_REQUIRE_REAL=1, fail) when a real component is missing."""
    if available:
        return
    if os.environ.get("POOLVISOR_REQUIRE_REAL") == "1":
        pytest.fail(f"real component required but missing: {reason}")
    pytest.skip(reason)


def require_shared_data(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    require_real(p.exists(), f"shared data not found: {p}")
    return p


@pytest.fixture
def shared_data() -> Path:
    return require_shared_data()


# PostgreSQL fixtures (pg_server, pg_url) shared by every area's tests.
from pg import pg_server, pg_url  # noqa: E402, F401
