"""Property-based API fuzzing (schemathesis): no 5xx and no undocumented status on any endpoint.

Runs every operation of /openapi.json with generated valid and invalid inputs against a real
services instance (temporary SQLite, demo pool), authenticated as admin. Bounded: a few examples
per operation so the whole module stays around a minute on one core.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from poolvisor.api.app import create_app
from poolvisor.services import Services, open_services

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The OpenAPI document needs no database: build the app now (schemathesis loads its schema at
# collection time) and attach a real services instance per module run in the fixture below.
APP = create_app(cast(Services, None))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def admin_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db: Path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    svc = open_services(f"sqlite:///{db}")
    svc.seed_demo(4)
    token = svc.bootstrap_admin_token()
    assert token is not None
    APP.state.services = svc
    yield token
    APP.state.services = None
    svc.close()


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_undocumented_status(case: Any, admin_token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS)
