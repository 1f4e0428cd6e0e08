"""`require_real`: skip locally, fail in CI (POOLVISOR_REQUIRE_REAL=1), when a real component is
missing. Its own module so that sub-directory conftests, which cannot import the root one by name,
use the same rule."""

from __future__ import annotations

import os

import pytest


def require_real(available: bool, reason: str) -> None:
    """Skip (or, in CI with POOLVISOR_REQUIRE_REAL=1, fail) when a real component is missing."""
    if available:
        return
    if os.environ.get("POOLVISOR_REQUIRE_REAL") == "1":
        pytest.fail(f"real component required but missing: {reason}")
    pytest.skip(reason)
