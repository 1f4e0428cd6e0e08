"""Fixtures for services tests: each test gets a fresh database, SQLite and (marked real) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from poolvisor.services import Services, open_services


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'poolvisor.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'poolvisor.db'}"


@pytest.fixture
def svc(db_url: str) -> Iterator[Services]:
    s = open_services(db_url)
    yield s
    s.close()


@pytest.fixture
def lite(sqlite_url: str) -> Iterator[Services]:
    """Services on SQLite only (for tests about behaviour that does not depend on the database)."""
    s = open_services(sqlite_url)
    yield s
    s.close()
