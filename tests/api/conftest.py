"""API fixtures: a real Services instance on a temporary SQLite file, the app and an HTTP client."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poolvisor.api.app import create_app
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services

with warnings.catch_warnings():  # starlette prefers httpx2; plain httpx works the same for these tests
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'api.db'}")
    seed_demo(s, 6)
    yield s
    s.close()


@pytest.fixture
def admin_token(svc: Services) -> str:
    tok = svc.auth.bootstrap_admin_token()
    assert tok is not None
    return tok


@pytest.fixture
def client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def sim_client(svc: Services) -> Iterator[TestClient]:
    """The app with the sim admin extension (/v1/sim: fault injection), as `serve --demo` runs it."""
    with TestClient(create_app(svc, sim_admin=True), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin(admin_token: str) -> dict[str, str]:
    """Headers of an admin caller."""
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.fixture
def member(svc: Services) -> Callable[[str], dict[str, str]]:
    """member(project) -> headers of a member of that project (created if missing)."""

    def make(project: str) -> dict[str, str]:
        if project not in {p.name for p in svc.catalog.list_projects()}:
            svc.catalog.create_project(project)
        return {"Authorization": f"Bearer {svc.auth.create_token('member', project)}"}

    return make

