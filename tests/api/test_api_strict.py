"""Strict types on every request: a JSON boolean is a boolean, a JSON number a number (422 otherwise).

The cases are derived from the OpenAPI document: for every field of every request body (nested
objects, list items and map values included), every JSON type the field's schema does not allow
is sent in place of a valid value, and must be a 422. VALID_BODIES holds one accepted body per
operation; a new operation with a body fails `test_every_body_operation_has_a_valid_body` until
it gets one here.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from poolvisor.api.app import create_app
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

# (method, path as sent, path template): a body the server accepts (any status but 422)
VALID_BODIES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("POST", "/v1/backup-targets"): ("/v1/backup-targets",
                                     {"name": "bt-strict", "path": tempfile.gettempdir()}),
    ("POST", "/v1/workloads/{name}/backups"): ("/v1/workloads/nowl/backups?project=demo",
                                               {"name": "b1", "target": "bt-strict"}),
    ("POST", "/v1/workloads/{name}/backups/{backup}/restore"): (
        "/v1/workloads/nowl/backups/b1/restore?project=demo", {"as_name": "w2", "host": "demo-000"}),
    ("PUT", "/v1/backup-schedules"): ("/v1/backup-schedules", {
        "project": "demo", "workload": "nowl", "every_s": 3600.5, "keep": 2, "target": "bt-strict"}),
    ("POST", "/v1/pools"): ("/v1/pools", {"name": "p-strict", "description": "a pool"}),
    ("POST", "/v1/hosts"): ("/v1/hosts", {
        "name": "h-strict", "capacity": {"vcpu": 8, "memory_mib": 1024.5}, "pool": "demo",
        "overcommit": {"vcpu": 2}, "labels": {"ssd": "yes"}, "domain": "rack-9", "max_workloads": 5,
        "driver": "sim", "uri": "sim://strict", "fence": "driver"}),
    ("PUT", "/v1/hosts/{name}/state"): ("/v1/hosts/demo-000/state", {"state": "up"}),
    ("POST", "/v1/flavors"): ("/v1/flavors", {"name": "f-strict", "demand": {"vcpu": 1, "memory_mib": 512}}),
    ("POST", "/v1/projects"): ("/v1/projects", {"name": "p-strict", "weight": 2.5}),
    ("PUT", "/v1/projects/{name}/weight"): ("/v1/projects/demo/weight", {"weight": 2}),
    ("PUT", "/v1/pools/{name}/allocation-policy"): ("/v1/pools/ghost/allocation-policy",
                                                    {"policy": "balanced"}),
    ("POST", "/v1/tokens"): ("/v1/tokens", {"role": "member", "project": "demo", "expires_in": 3600}),
    ("POST", "/v1/workloads"): ("/v1/workloads?dry_run=true", {
        "name": "w-strict", "project": "demo", "demand": {"vcpu": 1}, "kind": "vm", "priority": 3,
        "group": "g", "group_policy": "anti-affinity", "required_labels": {"gpu": "true"},
        "forbidden_labels": {"ssd": "no"}, "pool": "demo", "priority_class": "high", "wait": True,
        "duration_s": 60.5, "reservation": {"vcpu": 0.5}, "limit": {"vcpu": 1}, "shares": {"vcpu": 2000}}),
    ("POST", "/v1/workloads/batch"): ("/v1/workloads/batch?dry_run=true", {
        "project": "demo", "pool": "demo", "all_or_nothing": False,
        "workloads": [{"name": "b1", "demand": {"vcpu": 1}, "kind": "container", "priority": -2,
                       "group": "bg", "group_policy": "anti-affinity", "required_labels": {"rack": "rack-0"},
                       "forbidden_labels": {"ssd": "no"}, "reservation": {"vcpu": 0.5}, "limit": {"vcpu": 1},
                       "shares": {"vcpu": 2000}}]}),
    ("POST", "/v1/workloads/{name}/migrate"): ("/v1/workloads/ghost/migrate", {"host": "demo-001"}),
    ("POST", "/v1/workloads/{name}/snapshots"): ("/v1/workloads/ghost/snapshots?project=demo",
                                                 {"name": "s-strict"}),
    ("POST", "/v1/pools/{name}/consolidation-plan"): ("/v1/pools/demo/consolidation-plan",
                                                      {"max_migrations": 5, "apply": False}),
    ("POST", "/v1/utilization"): ("/v1/utilization", {"samples": [
        {"workload": "ghost", "project": "demo", "time": 6000, "cpu": 0.5}]}),
    # networks (docs/network.md): unknown pools and routers are a 404 once the body is valid
    ("POST", "/v1/ip-pools"): ("/v1/ip-pools", {"name": "ipp-strict", "cidr": "10.77.0.0/24",
                                                "project": "demo"}),
    ("POST", "/v1/ip-pools/{name}/allocations"): ("/v1/ip-pools/ghost/allocations", {
        "address": "10.77.0.5", "count": 1, "owner": "db"}),
    ("POST", "/v1/ip-pools/{name}/reservations"): ("/v1/ip-pools/ghost/reservations", {
        "first": "10.77.0.10", "last": "10.77.0.19", "note": "static"}),
    ("POST", "/v1/ip-pools/{name}/release"): ("/v1/ip-pools/ghost/release", {
        "first": "10.77.0.10", "last": "10.77.0.11"}),
    ("POST", "/v1/networks"): ("/v1/networks", {"name": "n-strict", "cidr": "10.78.0.0/24", "project": "demo",
                                                "gateway": "10.78.0.1", "no_gateway": False}),
    ("POST", "/v1/routers"): ("/v1/routers", {"name": "r-strict", "project": "demo", "protocol": "static"}),
    ("PUT", "/v1/routers/{name}/local-pref/{neighbour}"): ("/v1/routers/ghost/local-pref/other",
                                                           {"pref": 200}),
    ("POST", "/v1/routers/{name}/interfaces"): ("/v1/routers/ghost/interfaces", {
        "network": "n-strict", "address": "10.78.0.2", "cost": 5}),
    ("POST", "/v1/routers/{name}/interfaces/{network}/link"): ("/v1/routers/ghost/interfaces/n-strict/link",
                                                               {"state": "down", "cost": 3}),
    ("POST", "/v1/routers/{name}/routes"): ("/v1/routers/ghost/routes", {
        "prefix": "10.9.0.0/16", "nexthop": "10.78.0.1", "metric": 2}),
    # an unknown project: 409 (dataplane off) or 404, never a namespace touched
    ("POST", "/v1/dataplane/apply"): ("/v1/dataplane/apply", {"project": "nope-strict", "prefix": "pv"}),
    ("POST", "/v1/dataplane/teardown"): ("/v1/dataplane/teardown", {"project": "nope-strict",
                                                                    "prefix": "pv"}),
    # storage and memory pools (docs/storage.md): unknown pools, devices, volumes are a 404
    ("POST", "/v1/storage-pools"): ("/v1/storage-pools", {
        "name": "sp-strict", "replicas": 2, "oversubscription": 1.5, "segment_mib": 512, "access": "network",
        "compute_pool": "demo"}),
    ("POST", "/v1/storage-pools/{name}/devices"): ("/v1/storage-pools/ghost/devices", {
        "name": "d", "capacity_mib": 1000, "host": "demo-000", "device_class": "ssd", "domain": "r1"}),
    ("PUT", "/v1/storage-pools/{name}/devices/{device}/state"): ("/v1/storage-pools/ghost/devices/d/state",
                                                                 {"state": "leaving"}),
    ("POST", "/v1/volumes"): ("/v1/volumes", {"name": "v-strict", "pool": "ghost", "size_mib": 10,
                                              "thin": True, "device_class": "ssd", "replicas": 2,
                                              "project": "demo"}),
    ("POST", "/v1/volumes/{name}/resize"): ("/v1/volumes/ghost/resize", {"size_mib": 20}),
    ("POST", "/v1/volumes/{name}/snapshot"): ("/v1/volumes/ghost/snapshot", {"name": "s"}),
    ("POST", "/v1/volumes/{name}/migrate"): ("/v1/volumes/ghost/migrate", {"pool": "sp"}),
    ("POST", "/v1/volumes/{name}/attach"): ("/v1/volumes/ghost/attach", {"workload": "w"}),
    ("PUT", "/v1/pools/{name}/memory-overcommit"): ("/v1/pools/ghost/memory-overcommit", {"ratio": 1.5}),
    ("POST", "/v1/pools/{name}/memory-reclaim"): ("/v1/pools/ghost/memory-reclaim",
                                                  {"threshold": 0.9, "target_ratio": 0.8}),
    ("PUT", "/v1/workloads/{name}/memory-reservation"): ("/v1/workloads/ghost/memory-reservation",
                                                         {"mib": 512}),
    ("PUT", "/v1/pools/{name}/queue-discipline"): ("/v1/pools/ghost/queue-discipline", {"discipline": "drf"}),
    ("PUT", "/v1/projects/{name}/quota"): ("/v1/projects/demo/quota", {
        "limits": {"vcpu": 64, "workloads": 20}, "rate_limit": {"rate_per_s": 50, "burst": 100}}),
    ("PUT", "/v1/ha/admission"): ("/v1/ha/admission", {"tolerate_failures": 0, "reserve_percent": {"vcpu": 0},
                                                         "pool": "demo"}),
}
# bodies of the other branch of a union/oneOf, so its fields are typed too
MORE_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/workloads?dry_run=true", {"name": "w2", "flavor": "tiny"}),
    ("POST", "/v1/workloads/batch?dry_run=true", {"workloads": [{"name": "b2", "flavor": "tiny"}]}),
    ("POST", "/v1/utilization", {"samples": [{"workload": "ghost", "project": "demo",
                                              "time": "2024-01-01T00:00:00Z", "cpu": 1}]}),
]

SAMPLES: dict[str, Any] = {"boolean": True, "integer": 7, "number": 1.5, "string": "7", "array": [7],
                           "object": {"k": 7}, "null": None}

DOC = create_app(cast(Services, None)).openapi()


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema)
    if "anyOf" in schema and "properties" not in schema:
        return [b for s in schema["anyOf"] for b in _branches(s)]
    return [schema]


def _types(schema: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for b in _branches(schema):
        t = b.get("type")
        if t is None and "enum" in b:
            t = "string"
        out |= {t} if isinstance(t, str) else set(t or ())
    if "number" in out:
        out.add("integer")  # a JSON integer is a number
    return out


def _child(schema: dict[str, Any], key: str | int) -> dict[str, Any]:
    for b in _branches(schema):
        if isinstance(key, int) and "items" in b:
            return cast(dict[str, Any], b["items"])
        if isinstance(key, str) and key in b.get("properties", {}):
            return cast(dict[str, Any], b["properties"][key])
        if isinstance(key, str) and isinstance(b.get("additionalProperties"), dict):
            return cast(dict[str, Any], b["additionalProperties"])
    raise KeyError(key)


def _leaves(value: Any, schema: dict[str, Any], path: tuple[str | int, ...] = ()
            ) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    if path:
        yield path, schema
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, _child(schema, k), (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:1]):
            yield from _leaves(v, _child(schema, i), (*path, i))


def _replace(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, str(head): _replace(value[head], rest, new)}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


def _body_schema(method: str, template: str) -> dict[str, Any]:
    op = DOC["paths"][template][method.lower()]
    return cast(dict[str, Any], op["requestBody"]["content"]["application/json"]["schema"])


def _cases() -> Iterator[Any]:
    bodies = [(m, url, tpl, body) for (m, tpl), (url, body) in VALID_BODIES.items()]
    tpl_of = {url.split("?")[0]: tpl for (_, tpl), (url, _) in VALID_BODIES.items()}
    bodies += [(m, url, tpl_of[url.split("?")[0]], body) for m, url, body in MORE_BODIES]
    for method, url, tpl, body in bodies:
        for path, schema in _leaves(body, _body_schema(method, tpl)):
            for jtype, wrong in SAMPLES.items():
                if jtype not in _types(schema):
                    yield pytest.param(method, url, body, path, wrong,
                                       id=f"{method} {tpl} {'.'.join(map(str, path))}={jtype}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app for the many rejected requests (a 422 writes nothing, so they can share it)."""
    db: Path = tmp_path_factory.mktemp("strict") / "strict.db"
    svc = open_services(f"sqlite:///{db}")
    seed_demo(svc, 2)
    token = svc.auth.bootstrap_admin_token()
    assert token is not None
    with TestClient(create_app(svc), raise_server_exceptions=False) as c:
        yield c, {"Authorization": f"Bearer {token}"}
    svc.close()


def test_every_body_operation_has_a_valid_body() -> None:
    with_body = {(m.upper(), p) for p, item in DOC["paths"].items() for m, op in item.items()
                 if "requestBody" in op}
    assert with_body == set(VALID_BODIES)


@pytest.mark.parametrize(("method", "url", "body"),
                         [(m, url, b) for (m, _), (url, b) in VALID_BODIES.items()]
                         + [(m, url, b) for m, url, b in MORE_BODIES])
def test_valid_bodies_are_accepted(shared: tuple[TestClient, dict[str, str]], method: str, url: str,
                                   body: dict[str, Any]) -> None:
    """The baseline: each body passes validation, so a 422 below is the wrong type's doing."""
    client, admin = shared
    r = client.request(method, url, json=body, headers=admin)
    assert r.status_code != 422 and r.status_code < 500, r.text


@pytest.mark.parametrize(("method", "url", "body", "path", "wrong"), list(_cases()))
def test_wrong_json_type_is_422(shared: tuple[TestClient, dict[str, str]], method: str, url: str,
                                body: dict[str, Any], path: tuple[str | int, ...], wrong: Any) -> None:
    client, admin = shared
    r = client.request(method, url, json=_replace(body, path, wrong), headers=admin)
    assert r.status_code == 422, (path, wrong, r.text)
    assert r.json()["error"] == "invalid_input"


def test_the_reported_coercions_are_rejected(client: Any, admin: dict[str, str], svc: Services) -> None:
    assert client.post("/v1/workloads", json={"name": "m1", "flavor": "small", "project": "demo"},
                       headers=admin).status_code == 201
    events = len(svc.events.list_events(None, 1000))
    r = client.post("/v1/pools/demo/consolidation-plan", json={"apply": "yes"}, headers=admin)
    assert r.status_code == 422 and len(svc.events.list_events(None, 1000)) == events  # nothing executed
    sample = {"workload": "m1", "project": "demo", "time": True, "cpu": 0.5}
    assert client.post("/v1/utilization", json={"samples": [sample]}, headers=admin).status_code == 422
    for time in ("1700000000", "2024-01-01", 1.7e12, "2024-01-01T00:00:00+99:00"):
        r = client.post("/v1/utilization", json={"samples": [{**sample, "time": time}]}, headers=admin)
        assert r.status_code == 422, time
    r = client.post("/v1/workloads?dry_run=true", json={"name": "w", "demand": {"vcpu": True}}, headers=admin)
    assert r.status_code == 422
    # JSON integers where a float is expected, and integral floats where an integer is: fine
    r = client.post("/v1/workloads?dry_run=true", json={"name": "w", "demand": {"vcpu": 1}, "priority": 2.0},
                    headers=admin)
    assert r.status_code == 200, r.text
    assert client.post("/v1/workloads?dry_run=true", json={"name": "w", "demand": {"vcpu": 1},
                                                           "priority": 2.5}, headers=admin).status_code == 422


@pytest.mark.parametrize("value", ["yes", "no", "1", "0", "on", "True", "FALSE", "t", ""])
def test_query_flags_are_true_or_false_only(shared: tuple[TestClient, dict[str, str]], value: str) -> None:
    client, admin = shared
    body = {"name": "q1", "flavor": "tiny", "project": "demo"}
    r = client.post("/v1/workloads", params={"dry_run": value}, json=body, headers=admin)
    assert r.status_code == 422, r.text
    r = client.post("/v1/workloads/batch", params={"dry_run": value}, json={"workloads": [body]},
                    headers=admin)
    assert r.status_code == 422, r.text


def test_query_flag_true_and_false(client: Any, admin: dict[str, str]) -> None:
    body = {"name": "q1", "flavor": "tiny", "project": "demo"}
    assert client.post("/v1/workloads?dry_run=true", json=body, headers=admin).status_code == 200
    assert client.post("/v1/workloads?dry_run=false", json=body, headers=admin).status_code == 201


@pytest.mark.parametrize(("path", "params"), [
    ("/v1/events", {"limit": " 5"}), ("/v1/events", {"limit": "5_0"}), ("/v1/events", {"limit": "1.5"}),
    ("/v1/events", {"limit": "true"}), ("/v1/events", {"limit": "0x10"}),
    ("/v1/workloads/x/utilization", {"interval": "inf"}),
    ("/v1/workloads/x/utilization", {"interval": "nan"}),
    ("/v1/workloads/x/utilization", {"interval": "1_000"}),
    ("/v1/workloads/x/utilization", {"steps": "2.5"}),
    ("/v1/workloads/x/utilization", {"since": "1700000000"}),
    ("/v1/workloads/x/utilization", {"since": "2024-01-01"}),
    ("/v1/workloads/x/utilization", {"until": "1969-12-31T00:00:00Z"}),
    ("/v1/ip-pools/x/ranges", {"limit": " 5"}), ("/v1/ip-pools/x/ranges", {"limit": "5_0"}),
    ("/v1/ip-pools/x/ranges", {"limit": "0x10"}),
])
def test_query_numbers_and_dates_are_strict(shared: tuple[TestClient, dict[str, str]], path: str,
                                            params: dict[str, str]) -> None:
    client, admin = shared
    r = client.get(path, params=params, headers=admin)
    assert r.status_code == 422, r.text


def test_query_numbers_in_json_syntax_are_fine(client: Any, admin: dict[str, str]) -> None:
    pool = {"name": "lan", "cidr": "10.0.0.0/24"}
    assert client.post("/v1/ip-pools", json=pool, headers=admin).status_code == 201
    for limit in ("5", "5.0", "1e1"):
        assert client.get("/v1/events", params={"limit": limit}, headers=admin).status_code == 200, limit
        r = client.get("/v1/ip-pools/lan/ranges", params={"limit": limit}, headers=admin)
        assert r.status_code == 200, (limit, r.text)


def test_integral_numbers_are_integers(shared: tuple[TestClient, dict[str, str]]) -> None:
    """JSON Schema's `integer` is any number with an integral value: 7.0 is accepted wherever 7 is
    (the schema says so; a strict-mode int would refuse it)."""
    client, admin = shared
    tried = 0
    for (method, tpl), (url, body) in VALID_BODIES.items():
        for path, schema in _leaves(body, _body_schema(method, tpl)):
            value = body
            for key in path:
                value = value[key]
            if _types(schema) & {"integer", "number"} and isinstance(value, int) \
                    and not isinstance(value, bool) and "number" not in _types(schema):
                r = client.request(method, url, json=_replace(body, path, float(value)), headers=admin)
                assert r.status_code != 422, (tpl, path, r.text)
                tried += 1
    assert tried >= 8
