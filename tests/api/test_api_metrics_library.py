"""/metrics through prometheus-client: operational series (placement and HTTP latency, queue depth,
events, failures, migrations, process), one registry per app, and the per-caller cut."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from poolvisor.api.app import create_app
from poolvisor.observability.instruments import PRIORITY_CLASSES, QUEUE_DEPTH, counts, note_event
from poolvisor.services import Services
from poolvisor.store.retry import Stale

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _samples(text: str) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def _value(text: str, name: str, **labels: str) -> float:
    found = [s.value for s in _samples(text) if s.name == name and all(s.labels.get(k) == v
                                                                      for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


OPERATIONAL = ("poolvisor_placement_seconds", "poolvisor_http_request_duration_seconds",
               "poolvisor_queue_depth", "poolvisor_events_total", "poolvisor_failures_total",
               "poolvisor_migrations_total", "process_cpu_seconds_total", "python_info")


def test_anonymous_sees_no_operational_series(client: Any) -> None:
    names = {s.name for s in _samples(client.get("/metrics").text)}
    assert names and all(n.startswith("poolvisor_fleet_") for n in names), names


def test_member_sees_operational_series(client: Any, member: Callable[[str], dict[str, str]]) -> None:
    client.get("/v1/pools", headers=member("demo"))
    text = client.get("/metrics", headers=member("demo")).text
    names = {s.name for s in _samples(text)}
    for want in OPERATIONAL:
        assert any(n == want or n.startswith(want + "_") for n in names), want
    assert {s.labels["priority_class"] for s in _samples(text) if s.name == "poolvisor_queue_depth"} \
        == set(PRIORITY_CLASSES)
    assert _value(text, "poolvisor_pool_utilization_ratio", pool="demo", resource="vcpu") == 0.0


def test_placement_histogram_and_failures(client: Any, admin: dict[str, str]) -> None:
    def scrape() -> str:
        return str(client.get("/metrics", headers=admin).text)

    before = scrape()
    placed0 = _value(before, "poolvisor_placement_seconds_count", outcome="placed")
    fail0 = _value(before, "poolvisor_failures_total", kind="placement.no_valid_host")
    assert client.post("/v1/workloads", json={"name": "w1", "flavor": "small", "project": "demo"},
                       headers=admin).status_code == 201
    assert client.post("/v1/workloads", json={"name": "whale", "demand": {"vcpu": 100000},
                                              "project": "demo"}, headers=admin).status_code == 409
    after = scrape()
    assert _value(after, "poolvisor_placement_seconds_count", outcome="placed") == placed0 + 1
    assert _value(after, "poolvisor_placement_seconds_count", outcome="no_valid_host") >= 1
    assert _value(after, "poolvisor_failures_total", kind="placement.no_valid_host") == fail0 + 1
    assert _value(after, "poolvisor_pool_utilization_ratio", pool="demo", resource="vcpu") > 0


def test_http_latency_by_route_template_and_status(client: Any, admin: dict[str, str]) -> None:
    client.get("/v1/workloads/nope", params={"project": "demo"}, headers=admin)  # 404 on a template
    client.get("/no/such/path/x1")
    client.get("/no/such/path/x2")
    text = client.get("/metrics", headers=admin).text
    assert _value(text, "poolvisor_http_request_duration_seconds_count", method="GET",
                  route="/v1/workloads/{name}", status="404") == 1
    assert _value(text, "poolvisor_http_request_duration_seconds_count", method="GET",
                  route="<unmatched>", status="404") == 2
    routes = {s.labels.get("route") for s in _samples(text) if s.name.startswith("poolvisor_http_")}
    assert not any("nope" in str(r) or "x1" in str(r) for r in routes)  # templates, never raw paths


def test_each_app_has_its_own_registry(svc: Services, admin: dict[str, str]) -> None:
    with TestClient(create_app(svc)) as a, TestClient(create_app(svc)) as b:
        for _ in range(3):
            a.get("/healthz")
        b.get("/healthz")
        ta, tb = (c.get("/metrics", headers=admin).text for c in (a, b))
    assert _value(ta, "poolvisor_http_request_duration_seconds_count", method="GET", route="/healthz",
                  status="200") == 3
    assert _value(tb, "poolvisor_http_request_duration_seconds_count", method="GET", route="/healthz",
                  status="200") == 1


def test_queue_depth_hook(client: Any, admin: dict[str, str]) -> None:
    QUEUE_DEPTH.labels(priority_class="spot").set(7)
    try:
        text = client.get("/metrics", headers=admin).text
        assert _value(text, "poolvisor_queue_depth", priority_class="spot") == 7
    finally:
        QUEUE_DEPTH.labels(priority_class="spot").set(0)


def test_events_count_only_when_committed(svc: Services) -> None:
    kind = "test.committed_only"

    def rolled_back(s: Any) -> None:
        note_event(s, kind)
        raise Stale()

    with pytest.raises(Exception):  # noqa: B017 - the retry gives up with a conflict
        svc.store.run(rolled_back, deadline_s=0.01)
    assert counts()[0].get(kind, 0) == 0
    svc.store.run(lambda s: note_event(s, kind))
    assert counts()[0][kind] == 1


@pytest.mark.parametrize("who", ["anonymous", "acme", "admin"])
def test_every_named_series_is_cut_to_the_caller(svc: Services, client: Any, admin: dict[str, str],
                                                  member: Callable[[str], dict[str, str]], who: str) -> None:
    for project in ("acme", "globex"):
        svc.catalog.create_project(project)
        svc.workloads.create_workload(project, f"{project}-vm", flavor="small")
    headers = {"anonymous": {}, "acme": member("acme"), "admin": admin}[who]
    samples = _samples(client.get("/metrics", headers=headers).text)
    projects = {s.labels["project"] for s in samples if "project" in s.labels}
    pools = {s.labels["pool"] for s in samples if "pool" in s.labels}
    assert projects == {"anonymous": set(), "acme": {"acme"}, "admin": {"acme", "globex"}}[who]
    assert pools == (set() if who == "anonymous" else {"demo"})
