"""/metrics shows each caller what it could read through the API: no tenant names without a token."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poolvisor.api.app import create_app
from poolvisor.api.metrics import load_scrape_token
from poolvisor.domain.errors import InvalidInputError
from poolvisor.services import Services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SCRAPE = "scrape-token-0123456789abcdef"


@pytest.fixture
def scraped(svc: Services) -> Iterator[TestClient]:
    """A client of an app configured with a scrape token, two projects each with a workload."""
    for project in ("acme-secret", "globex-secret"):
        svc.catalog.create_project(project)
        svc.workloads.create_workload(project, f"{project}-vm", flavor="small")
    with TestClient(create_app(svc, metrics_token=SCRAPE), raise_server_exceptions=False) as c:
        yield c


def _series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _labels(text: str, label: str) -> set[str]:
    return {m.group(1) for m in re.finditer(rf'{label}="([^"]*)"', text)}


def test_anonymous_scrape_carries_no_names(scraped: TestClient) -> None:
    r = scraped.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "secret" not in r.text and "demo" not in r.text
    assert all(re.fullmatch(r'poolvisor_fleet_\w+\{(state|resource)="[a-z_-]+"\} [0-9.e+]+', s)
               for s in _series(r.text)), r.text
    assert 'poolvisor_fleet_workloads{state="running"} 2' in r.text
    assert 'poolvisor_fleet_hosts{state="up"} 6' in r.text
    assert 'poolvisor_fleet_allocated{resource="vcpu"} 2' in r.text  # two 'small' (1 vCPU each)
    # exact (the library writes shortest round-trip floats, never a lossy 7.86432e+05)
    assert 'poolvisor_fleet_capacity{resource="memory_mib"} 786432.0\n' in r.text


def test_values_are_exact(scraped: TestClient, svc: Services) -> None:
    """Every fleet value parses back to exactly the sum the services report."""
    from prometheus_client.parser import text_string_to_metric_families

    fams = {f.name: f for f in text_string_to_metric_families(scraped.get("/metrics").text)}
    hosts = svc.hosts.list_hosts()
    for field in ("allocated", "free"):
        want: dict[str, float] = {}
        for h in hosts:
            for res, v in getattr(h, field).items():
                want[res] = want.get(res, 0.0) + v
        got = {smp.labels["resource"]: smp.value for smp in fams[f"poolvisor_fleet_{field}"].samples}
        assert got == want


def test_member_sees_its_own_project_only(scraped: TestClient, member: Callable[[str], dict[str, str]]
                                          ) -> None:
    r = scraped.get("/metrics", headers=member("acme-secret"))
    assert r.status_code == 200
    assert _labels(r.text, "project") == {"acme-secret"}
    assert 'poolvisor_workloads{project="acme-secret",state="running"} 1' in r.text
    assert "globex" not in r.text
    assert 'poolvisor_hosts{pool="demo",state="up"} 6' in r.text  # pools: readable by any token


@pytest.mark.parametrize("who", ["admin", "scrape"])
def test_admin_and_scrape_token_see_every_project(scraped: TestClient, admin: dict[str, str], who: str
                                                  ) -> None:
    headers = admin if who == "admin" else {"Authorization": f"Bearer {SCRAPE}"}
    r = scraped.get("/metrics", headers=headers)
    assert r.status_code == 200
    assert _labels(r.text, "project") == {"acme-secret", "globex-secret"}
    assert 'poolvisor_pool_allocated{pool="demo",resource="vcpu"} 2' in r.text


def test_scrape_token_opens_metrics_only(scraped: TestClient) -> None:
    headers = {"Authorization": f"Bearer {SCRAPE}"}
    assert scraped.get("/v1/projects", headers=headers).status_code == 401
    assert scraped.get("/v1/whoami", headers=headers).status_code == 401


@pytest.mark.parametrize("header", ["Bearer nope-not-a-token", "Basic dXNlcjpwYXNz", "Bearer", "garbage",
                                    "Bearer " + "x" * 300, "Bearer pv\xe9".encode("latin-1")])
def test_a_bad_token_is_401_not_an_anonymous_scrape(scraped: TestClient, header: str | bytes) -> None:
    r = scraped.get("/metrics", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_without_scrape_token_that_token_is_just_invalid(client: Any) -> None:
    assert client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}).status_code == 401


def test_metrics_auth_is_optional_in_openapi(client: Any) -> None:
    op = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert {} in op["security"] and any("HTTPBearer" in s for s in op["security"])
    assert "401" in op["responses"]


def test_scrape_token_file(tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.write_text(SCRAPE + "\n")
    assert load_scrape_token(ok) == SCRAPE
    for content in (b"short\n", b"has a space in it 0123456789\n", b"\xff\xfe0123456789abcdef", b""):
        bad = tmp_path / "bad"
        bad.write_bytes(content)
        with pytest.raises(InvalidInputError):
            load_scrape_token(bad)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_scrape_token(tmp_path / "missing")
