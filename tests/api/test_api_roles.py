"""Roles on EVERY route of the OpenAPI document (generated from the app: a new route is covered, or
this test fails saying which value or body it needs):

- without a token, every route but the public ones answers 401;
- a member of project alpha gets 404 for every object of project beta (path parameters, `project`
  query parameters, bodies naming beta's objects, also next to alpha's own in the path), exactly
  as for objects that do not exist; a route only admins may use answers 403 instead, whatever the
  object; no answer to alpha's tokens ever mentions beta's objects;
- a viewer (read-only) gets 403 on every write method (POST, PUT, PATCH, DELETE) and reads what a
  member of its project reads; a global viewer reads what an admin reads and writes nothing.

Beta's objects exist (an admin reads each of them), so a 404 means "hidden", not "absent".
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from poolvisor.api.app import create_app
from poolvisor.api.auth import WRITE_METHODS, admin
from poolvisor.api.openapi import depends_on, operations
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PUBLIC = {("GET", "/healthz"), ("GET", "/metrics")}  # answer without a token, by design
# fleet-wide objects (no project): members read, admins write
SHARED = {"hosts", "pools", "flavors", "storage-pools", "backup-targets"}
HIDDEN_MARK = "beta"  # every object of project beta carries it in its name


@dataclass
class World:
    """The objects of one project (tag alpha or beta), named after the tag."""

    tag: str
    project: str = ""
    workload: str = ""
    pool: str = ""
    network: str = ""
    router: str = ""
    task_id: int = 0
    token_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def populate(svc: Services, tag: str, octet: int) -> World:
    w = World(tag, f"team-{tag}", f"w{tag}", f"ipp{tag}", f"net{tag}", f"r{tag}")
    svc.catalog.create_project(w.project)
    svc.networks.create_ip_pool(w.project, w.pool, f"10.{octet}.0.0/24")
    svc.networks.create_network(w.project, w.network, f"10.{octet + 1}.0.0/24")
    svc.workloads.create_workload(w.project, w.workload, flavor="small", networks=[w.network])
    svc.workloads.create_workload(w.project, f"{w.workload}2", flavor="small")
    svc.routers.create_router(w.project, w.router, "static")
    svc.routers.attach_router(w.project, w.router, w.network)
    svc.routers.add_static_route(w.project, w.router, "10.200.0.0/16", f"10.{octet + 1}.0.1")
    w.task_id = svc.workloads.submit_migrate(w.project, f"{w.workload}2").id
    w.token_id = svc.auth.issue_token("member", w.project, label=tag).record.id
    svc.utilization.record_utilization([((w.project, w.workload), 6000.0 + i * 300, 0.5) for i in range(3)])
    backup = svc.backups.submit_create(w.project, w.workload, name=f"b{tag}")  # run by the app's executor
    for _ in range(1000):
        if svc.tasks.get_task(backup.id).state == "succeeded":
            break
        time.sleep(0.01)
    assert svc.tasks.get_task(backup.id).state == "succeeded"
    svc.snapshots.submit_create(w.project, w.workload, f"s{tag}")
    w.extra["schedule"] = svc.backup_schedules.set_schedule(w.project, "workload", w.workload, every_s=86400,
                                                            keep=2).id
    w.extra["bt_path"] = svc.backups.list_targets()[0].path
    svc.volumes.create_volume(w.project, f"vol{tag}", "sp", 64)
    svc.queue.enqueue(w.project, f"q{tag}", flavor="small")  # a creation waiting for capacity
    svc.quotas.set_quota(w.project, {"workloads": 2})  # used up: a "quota nearly exhausted" alert
    svc.alerts.evaluate()
    w.extra["alert"] = svc.alerts.list_alerts(w.project)[0].id
    w.extra["octet"] = octet
    return w


# how to fill each path parameter: (first segment after /v1, parameter) -> value in a World
PARAMS: dict[tuple[str, str], Callable[[World], Any]] = {
    ("workloads", "name"): lambda w: w.workload,
    ("ip-pools", "name"): lambda w: w.pool,
    ("networks", "name"): lambda w: w.network,
    ("routers", "name"): lambda w: w.router,
    ("routers", "network"): lambda w: w.network,
    ("routers", "neighbour"): lambda w: f"{w.router}-peer",
    ("tasks", "task_id"): lambda w: w.task_id,
    ("tokens", "token_id"): lambda w: w.token_id,
    ("projects", "name"): lambda w: w.project,
    ("hosts", "name"): lambda w: "demo-000",
    ("pools", "name"): lambda w: "demo",
    ("flavors", "name"): lambda w: "small",
    ("workloads", "snap"): lambda w: f"s{w.tag}",
    ("volumes", "name"): lambda w: f"vol{w.tag}",
    ("alerts", "alert_id"): lambda w: w.extra.get("alert", 999_999),
    ("storage-pools", "name"): lambda w: "sp",
    ("storage-pools", "device"): lambda w: "d0",
    ("workloads", "backup"): lambda w: f"b{w.tag}",
    ("backup-schedules", "schedule_id"): lambda w: w.extra.get("schedule", 999_999),
    ("backup-targets", "name"): lambda w: "bt",
    ("ha", "name"): lambda w: "demo",
    ("queue", "name"): lambda w: f"q{w.tag}",
}
# query parameters filled in (required ones must be here)
QUERY: dict[str, Callable[[World], Any]] = {
    "project": lambda w: w.project,
    "workload": lambda w: w.workload,
    "prefix": lambda w: "10.200.0.0/16",
    "address": lambda w: f"10.{w.extra['octet'] + 1}.0.5",
}
# a valid body per operation that has one (a required body that is missing fails the test)
BODIES: dict[tuple[str, str], Callable[[World], Any]] = {
    ("POST", "/v1/pools"): lambda w: {"name": "p-new"},
    ("POST", "/v1/hosts"): lambda w: {"name": "h-new", "capacity": {"vcpu": 1}},
    ("PUT", "/v1/hosts/{name}/state"): lambda w: {"state": "up"},
    ("POST", "/v1/flavors"): lambda w: {"name": "f-new", "demand": {"vcpu": 1}},
    ("POST", "/v1/projects"): lambda w: {"name": "p-new"},
    ("POST", "/v1/tokens"): lambda w: {"role": "viewer", "project": w.project},
    ("POST", "/v1/workloads"): lambda w: {"name": "w-new", "flavor": "small", "project": w.project},
    ("POST", "/v1/workloads/batch"): lambda w: {"project": w.project,
                                                "workloads": [{"name": "b-new", "flavor": "small"}]},
    ("POST", "/v1/utilization"): lambda w: {"samples": [{"workload": w.workload, "project": w.project,
                                                         "time": 6000, "cpu": 0.5}]},
    ("POST", "/v1/ip-pools"): lambda w: {"name": "ipp-new", "cidr": "10.90.0.0/24", "project": w.project},
    ("POST", "/v1/ip-pools/{name}/allocations"): lambda w: {"count": 1},
    ("POST", "/v1/ip-pools/{name}/reservations"): lambda w: {"first": f"10.{w.extra['octet']}.0.10",
                                                             "last": f"10.{w.extra['octet']}.0.11"},
    ("POST", "/v1/ip-pools/{name}/release"): lambda w: {"first": f"10.{w.extra['octet']}.0.10"},
    ("POST", "/v1/networks"): lambda w: {"name": "net-new", "cidr": "10.91.0.0/24", "project": w.project},
    ("POST", "/v1/routers"): lambda w: {"name": "r-new", "project": w.project, "protocol": "static"},
    ("POST", "/v1/routers/{name}/interfaces"): lambda w: {"network": w.network},
    ("POST", "/v1/routers/{name}/interfaces/{network}/link"): lambda w: {"state": "down"},
    ("POST", "/v1/routers/{name}/routes"): lambda w: {"prefix": "10.201.0.0/16",
                                                      "nexthop": f"10.{w.extra['octet'] + 1}.0.1"},
    ("PUT", "/v1/projects/{name}/quota"): lambda w: {"limits": {"vcpu": 1}},
    ("POST", "/v1/workloads/{name}/snapshots"): lambda w: {"name": "s-new"},
    ("POST", "/v1/storage-pools"): lambda w: {"name": "sp-new"},
    ("POST", "/v1/storage-pools/{name}/devices"): lambda w: {"name": "d-new", "capacity_mib": 1024},
    ("PUT", "/v1/storage-pools/{name}/devices/{device}/state"): lambda w: {"state": "leaving"},
    ("POST", "/v1/volumes"): lambda w: {"name": "vol-new", "pool": "sp", "size_mib": 64,
                                        "project": w.project},
    ("POST", "/v1/volumes/{name}/resize"): lambda w: {"size_mib": 128},
    ("POST", "/v1/volumes/{name}/snapshot"): lambda w: {"name": "vs-new"},
    ("POST", "/v1/volumes/{name}/migrate"): lambda w: {"pool": "sp"},
    ("POST", "/v1/volumes/{name}/attach"): lambda w: {"workload": w.workload},
    ("PUT", "/v1/pools/{name}/memory-overcommit"): lambda w: {"ratio": 1.5},
    ("PUT", "/v1/ha/admission"): lambda w: {"tolerate_failures": 0},
    ("PUT", "/v1/routers/{name}/local-pref/{neighbour}"): lambda w: {"pref": 200},
    ("PUT", "/v1/workloads/{name}/memory-reservation"): lambda w: {"mib": 128},
    ("POST", "/v1/backup-targets"): lambda w: {"name": "bt-new",
                                               "path": w.extra.get("bt_path", "/nonexistent")},
    ("POST", "/v1/workloads/{name}/backups"): lambda w: {"name": "b-new"},
    ("POST", "/v1/workloads/{name}/backups/{backup}/restore"): lambda w: {"as_name": "wr-new"},
    ("PUT", "/v1/backup-schedules"): lambda w: {"project": w.project, "workload": w.workload, "every_s": 3600,
                                                "keep": 2},
    ("PUT", "/v1/pools/{name}/queue-discipline"): lambda w: {"discipline": "fifo"},
    ("PUT", "/v1/projects/{name}/weight"): lambda w: {"weight": 2},
    ("PUT", "/v1/pools/{name}/allocation-policy"): lambda w: {"policy": "max"},
}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    spec: dict[str, Any]
    admin_only: bool

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def kinds(self) -> list[str]:
        return [self.path.split("/")[2]] if re.search(r"\{\w+\}", self.path) else []

    @property
    def query_names(self) -> set[str]:
        return {p["name"] for p in self.spec.get("parameters", []) if p["in"] == "query"}

    def scoped(self) -> bool:
        """Whether the request names a project's object (path, `project` query or body)."""
        body = BODIES.get((self.method, self.path))
        probe = World("x", project="PROBE", extra={"octet": 1})
        return any(k not in SHARED for k in self.kinds) or "project" in self.query_names or \
            (body is not None and "PROBE" in str(body(probe)))

    def request(self, w: World, *, project_query: bool = True,
                body_of: World | None = None) -> dict[str, Any]:
        def fill(m: re.Match[str]) -> str:
            key = (self.path.split("/")[2], m.group(1))
            if key not in PARAMS:
                pytest.fail(f"{self}: no value for path parameter {{{m.group(1)}}}: add it to PARAMS")
            return str(PARAMS[key](w))

        url = re.sub(r"\{(\w+)\}", fill, self.path)
        params = {}
        for p in self.spec.get("parameters", []):
            if p["in"] != "query" or (p["name"] == "project" and not project_query):
                continue
            if p["name"] in QUERY and (p.get("required") or p["name"] in ("project", "workload")):
                params[p["name"]] = QUERY[p["name"]](w)
            elif p.get("required"):
                pytest.fail(f"{self}: no value for required query parameter {p['name']!r}: add it to QUERY")
        kw: dict[str, Any] = {"params": params}
        body = self.spec.get("requestBody")
        if (self.method, self.path) in BODIES:
            kw["json"] = BODIES[(self.method, self.path)](body_of or w)
        elif body is not None and body.get("required"):
            pytest.fail(f"{self}: needs a request body: add one to BODIES")
        return {"method": self.method, "url": url, **kw}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Services, list[Op]]]:
    svc = open_services(f"sqlite:///{Path(tmp_path_factory.mktemp('roles')) / 'roles.db'}")
    seed_demo(svc, 4)
    svc.volumes.create_pool("sp", replicas=2)
    for i in range(3):
        svc.volumes.add_device("sp", f"d{i}", 4096, domain=f"rack{i}")
    svc.backups.add_target("bt", str(tmp_path_factory.mktemp("bt")))
    app = create_app(svc, queue_interval=None, backup_interval=None)  # queued requests stay queued; schedules
    app.state.event_stream_max_s = 0.5  # the event stream ends by itself: each read returns
    doc = app.openapi()
    admin_only = {(m, o.path) for o in operations(app) if depends_on(o.dependant, admin) for m in o.methods}
    ops = [Op(m.upper(), p, spec, (m.upper(), p) in admin_only)
           for p, item in doc["paths"].items() for m, spec in item.items()]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c, svc, ops
    svc.close()


@pytest.fixture(scope="module")
def parties(world: tuple[TestClient, Services, list[Op]]) -> dict[str, Any]:
    _c, svc, _ops = world
    alpha, beta = populate(svc, "alpha", 60), populate(svc, "beta", 70)
    token = svc.auth.bootstrap_admin_token()
    assert token is not None

    def h(t: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {t}"}

    return {"alpha": alpha, "beta": beta, "admin": h(token),
            "member": h(svc.auth.create_token("member", alpha.project)),
            "viewer": h(svc.auth.create_token("viewer", alpha.project)),
            "global_viewer": h(svc.auth.create_token("viewer"))}


def call(c: TestClient, req: dict[str, Any], headers: dict[str, str]) -> Any:
    return c.request(req["method"], req["url"], params=req["params"], json=req.get("json"), headers=headers)


def test_every_route_needs_a_token(world: Any, parties: dict[str, Any]) -> None:
    c, _svc, ops = world
    bad = []
    for op in ops:
        if (op.method, op.path) in PUBLIC:
            continue
        for headers in ({}, {"Authorization": "Bearer pv_not-a-token"}):
            r = call(c, op.request(parties["beta"]), headers)
            if r.status_code != 401 or r.json()["error"] != "unauthorized":
                bad.append(f"{op}: {r.status_code} without a valid token")
    assert not bad, "\n".join(bad)


def test_beta_objects_exist_for_admins(world: Any, parties: dict[str, Any]) -> None:
    """The 404s below mean hidden: an admin reads every object of beta the requests name."""
    c, _svc, ops = world
    bad = []
    for op in ops:
        if op.method == "GET" and op.kinds:
            r = call(c, op.request(parties["beta"]), parties["admin"])
            if r.status_code != 200:
                bad.append(f"{op}: {r.status_code} {r.text[:200]}")
    assert not bad, "\n".join(bad)


def test_a_member_gets_404_for_another_projects_objects(world: Any, parties: dict[str, Any]) -> None:
    c, _svc, ops = world
    beta, ghost = parties["beta"], World("ghost", "team-ghost", "wghost", "ippghost", "netghost", "rghost",
                                         999_999, 999_999, {"octet": 70})
    bad, checked = [], 0
    for op in ops:
        if not op.scoped():
            continue
        checked += 1
        r = call(c, op.request(beta), parties["member"])
        want = 403 if op.admin_only else 404
        if r.status_code != want:
            bad.append(f"{op}: {r.status_code} for beta's object (want {want}): {r.text[:200]}")
            continue
        # beta's objects are indistinguishable from objects that do not exist
        other = call(c, op.request(ghost), parties["member"])
        if other.status_code != r.status_code:
            bad.append(f"{op}: {r.status_code} for beta's object but {other.status_code} for a missing one")
        if not op.admin_only and r.json()["error"] != "not_found":
            bad.append(f"{op}: error {r.json()['error']} instead of not_found")
    assert checked >= 40
    assert not bad, "\n".join(bad)


def test_a_body_naming_another_projects_objects_is_404(world: Any, parties: dict[str, Any]) -> None:
    """Alpha's own objects in the path, beta's in the body (a router interface on beta's network,
    samples for beta's workload, a token for beta): refused as not found, nothing done."""
    c, _svc, ops = world
    alpha, beta = parties["alpha"], parties["beta"]
    bad, checked = [], 0
    for op in ops:
        body = BODIES.get((op.method, op.path))
        if body is None or op.admin_only or HIDDEN_MARK not in str(body(beta)):
            continue
        checked += 1
        r = call(c, op.request(alpha, body_of=beta), parties["member"])
        if r.status_code != 404:
            bad.append(f"{op}: {r.status_code} for a body naming beta's objects: {r.text[:200]}")
    assert checked >= 5
    assert not bad, "\n".join(bad)


def test_no_read_shows_another_projects_objects(world: Any, parties: dict[str, Any]) -> None:
    c, _svc, ops = world
    alpha = parties["alpha"]
    bad = []
    for who in ("member", "viewer"):
        for op in ops:
            if op.method != "GET":
                continue
            r = call(c, op.request(alpha), parties[who])
            if r.status_code != 200:
                bad.append(f"{who} {op}: {r.status_code} reading its own project: {r.text[:200]}")
            elif HIDDEN_MARK in r.text:
                bad.append(f"{who} {op}: the answer names project beta's objects")
            # lists without ?project= are the caller's project too
            if "project" in op.query_names:
                r = call(c, op.request(alpha, project_query=False), parties[who])
                if r.status_code != 200 or HIDDEN_MARK in r.text:
                    bad.append(f"{who} {op} without ?project=: {r.status_code}, or names beta's objects")
    assert not bad, "\n".join(bad)


def test_viewers_cannot_write_anything(world: Any, parties: dict[str, Any], ) -> None:
    c, svc, ops = world
    before = {w.name for w in svc.workloads.list_workloads()}
    bad, writes = [], 0
    for who, w in (("viewer", parties["alpha"]), ("global_viewer", parties["alpha"])):
        for op in ops:
            if op.method not in WRITE_METHODS:
                continue
            writes += 1
            r = call(c, op.request(w), parties[who])
            if r.status_code != 403 or r.json()["error"] != "forbidden":
                bad.append(f"{who} {op}: {r.status_code} {r.text[:200]}")
    assert writes >= 2 * 30
    assert not bad, "\n".join(bad)
    assert {w.name for w in svc.workloads.list_workloads()} == before


def test_a_global_viewer_reads_what_an_admin_reads(world: Any, parties: dict[str, Any]) -> None:
    c, _svc, ops = world
    bad = []
    for op in ops:
        if op.method != "GET":
            continue
        req = op.request(parties["beta"])
        a, v = call(c, req, parties["admin"]), call(c, req, parties["global_viewer"])
        if a.status_code != v.status_code:
            bad.append(f"{op}: admin {a.status_code}, global viewer {v.status_code}")
    assert not bad, "\n".join(bad)


def test_viewer_tokens(world: Any, parties: dict[str, Any]) -> None:
    c, _svc, _ops = world
    me = c.get("/v1/whoami", headers=parties["viewer"]).json()
    assert (me["role"], me["project"]) == ("viewer", "team-alpha")
    r = c.post("/v1/tokens", json={"role": "viewer"}, headers=parties["member"])  # members mint viewers
    assert r.status_code == 201 and (r.json()["role"], r.json()["project"]) == ("viewer", "team-alpha")
    r = c.post("/v1/tokens", json={"role": "viewer", "project": "team-beta"}, headers=parties["member"])
    assert r.status_code == 404
    r = c.post("/v1/tokens", json={"role": "viewer"}, headers=parties["admin"])
    assert r.status_code == 201 and r.json()["project"] is None  # a global viewer
    assert c.get("/v1/whoami", headers={"Authorization": f"Bearer {r.json()['token']}"}).json()["role"] \
        == "viewer"
