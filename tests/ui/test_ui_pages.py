"""The dashboard's routes through FastAPI's TestClient: sessions, CSRF, scoping, forms, error pages."""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolvisor.api.app import create_app
from poolvisor.demo.cluster import seed_demo
from poolvisor.services import Services, open_services
from poolvisor.ui.session import COOKIE, csrf_token

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PAGES = ("/ui/pools", "/ui/pools/demo", "/ui/hosts", "/ui/hosts?resource=memory_mib", "/ui/workloads",
         "/ui/workloads/demo/w1", "/ui/tasks", "/ui/tasks/rows", "/ui/events", "/ui/whatif")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path_factory.mktemp('ui') / 'ui.db'}")
    seed_demo(s, 4)
    s.workloads.create_workload("demo", "w1", flavor="small", pool="demo")
    s.catalog.create_project("team-b")
    s.workloads.create_workload("team-b", "b1", flavor="tiny")
    yield s
    s.close()


@pytest.fixture(scope="module")
def app_client(svc: Services) -> Iterator[TestClient]:
    with TestClient(create_app(svc), raise_server_exceptions=True, follow_redirects=False) as c:
        yield c


@pytest.fixture(scope="module")
def admin_token(svc: Services) -> str:
    return svc.auth.create_token("admin", label="ui-test")


@pytest.fixture
def client(app_client: TestClient) -> Iterator[TestClient]:
    app_client.cookies.clear()
    yield app_client
    app_client.cookies.clear()


def login(c: TestClient, token: str) -> str:
    r = c.post("/ui/login", content=f"token={token}&next=/ui/workloads", headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/ui/workloads", r.text
    return csrf_token(token)


def names(html: str) -> set[str]:
    return set(re.findall(r'data-workload="([^"]+)"', html))


def test_without_a_session_pages_redirect_to_login(client: TestClient) -> None:
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=%2Fui%2F"), r.headers["location"]
    r = client.get("/ui/tasks/rows", headers={"HX-Request": "true"})  # htmx: no redirect into a fragment
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/ui/login"
    assert client.get("/ui/login").status_code == 200


def test_login_sets_a_strict_httponly_cookie_and_logout_clears_it(client: TestClient,
                                                                   admin_token: str) -> None:
    r = client.post("/ui/login", content=f"token={admin_token}", headers=FORM)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}={admin_token}" in cookie
    for attr in ("HttpOnly", "SameSite=strict", "Path=/ui"):
        assert attr.lower() in cookie.lower(), cookie
    assert client.get("/ui/pools").status_code == 200
    assert client.post("/ui/logout", content="", headers=FORM).status_code == 403  # no CSRF value
    r = client.post("/ui/logout", content=f"csrf={csrf_token(admin_token)}", headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert 'Max-Age=0' in r.headers["set-cookie"] or "expires=" in r.headers["set-cookie"].lower()
    client.cookies.clear()
    assert client.get("/ui/pools").status_code == 303


def test_bad_or_revoked_tokens_are_refused(client: TestClient, svc: Services) -> None:
    r = client.post("/ui/login", content="token=pv_nope", headers=FORM)
    assert r.status_code == 401 and "invalid bearer token" in r.text
    issued = svc.auth.issue_token("member", "team-b")
    login(client, issued.token)
    assert client.get("/ui/workloads").status_code == 200
    svc.auth.revoke_token(issued.record.id)
    r = client.get("/ui/workloads")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_every_page_renders_for_an_admin(client: TestClient, admin_token: str) -> None:
    login(client, admin_token)
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-eval" not in csp
        assert "<script>" not in r.text, "no inline scripts (the CSP would block them)"
    assert names(client.get("/ui/workloads").text) >= {"demo/w1", "team-b/b1"}
    assert names(client.get("/ui/workloads?project=team-b").text) == {"team-b/b1"}
    # the filter forms' blank choice ("all") is no filter
    assert names(client.get("/ui/workloads?project=").text) >= {"demo/w1", "team-b/b1"}
    assert client.get("/ui/events?project=").status_code == 200


def test_member_sees_only_its_project(client: TestClient, svc: Services) -> None:
    login(client, svc.auth.create_token("member", "team-b"))
    assert names(client.get("/ui/workloads").text) == {"team-b/b1"}
    assert client.get("/ui/workloads/team-b/b1").status_code == 200
    for path in ("/ui/pools", "/ui/pools/demo", "/ui/hosts", "/ui/tasks", "/ui/events"):  # as in /v1
        r = client.get(path)
        assert r.status_code == 200 and "workload/demo/" not in r.text and "demo/w1" not in r.text, path
    for path in ("/ui/workloads/demo/w1", "/ui/workloads?project=demo", "/ui/events?project=demo"):
        r = client.get(path)
        assert r.status_code == 404 and "not found" in r.text, path
    r = client.get("/ui/whatif")
    assert r.status_code == 403 and "admin" in r.text
    assert 'id="who">member of team-b' in r.text  # an error page keeps the session's navigation
    events = client.get("/ui/events").text
    assert "team-b" in events and "workload/demo/" not in events
    assert 'href="/ui/whatif"' not in client.get("/ui/pools").text


def test_create_through_the_form_uses_the_api_use_case(client: TestClient, svc: Services,
                                                        admin_token: str) -> None:
    csrf = login(client, svc.auth.create_token("member", "team-b"))
    # a member's project is its own whatever the form says (the API's scope_project)
    r = client.post("/ui/workloads", content=f"csrf={csrf}&project=demo&name=x1&flavor=tiny", headers=FORM)
    assert r.status_code == 404
    r = client.post("/ui/workloads", content=f"csrf={csrf}&name=b2&vcpu=1&memory_mib=512&pool=demo",
                    headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/ui/workloads/team-b/b2"
    w = svc.workloads.get_workload("team-b", "b2")
    assert w.state == "running" and w.demand["vcpu"] == 1 and w.explanation
    page = client.get(r.headers["location"]).text
    assert "Why this host" in page and w.explanation["rule"] in page.replace("&#43;", "+")
    # the API's validation and errors, shown next to the form with their status
    for body, status, text in (
        ("name=b3", 422, "exactly one of flavor or demand"),
        ("name=b3&flavor=tiny&vcpu=1", 422, "exactly one of flavor or demand"),
        ("name=bad name&flavor=tiny", 422, "name: names are 1..63 letters"),
        ("name=b3&vcpu=lots", 422, "not a number"),
        ("name=b2&flavor=tiny", 409, "already exists"),
        ("name=b3&flavor=nope", 404, "flavor"),
        ("name=b3&vcpu=100000", 409, "hosts considered"),
    ):
        r = client.post("/ui/workloads", content=f"csrf={csrf}&{body}", headers=FORM)
        assert r.status_code == status, (body, r.text[-800:])
        assert text in r.text, (body, re.findall(r'id="form-error">([^<]*)', r.text))
    assert {w.name for w in svc.workloads.list_workloads("team-b")} == {"b1", "b2"}


def test_a_queued_create_is_shown_next_to_the_form(client: TestClient, svc: Services,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's use case may answer a request that waits in the queue with its own 202 response;
    the form shows that (an explicit branch, not an assert that `python -O` strips)."""
    from fastapi.responses import JSONResponse

    from poolvisor.api.routes import workloads as workloads_api

    monkeypatch.setattr(workloads_api, "create_record",
                        lambda *a, **k: JSONResponse({"pending": True}, status_code=202))
    csrf = login(client, svc.auth.create_token("member", "team-b"))
    r = client.post("/ui/workloads", content=f"csrf={csrf}&name=q1&flavor=tiny", headers=FORM)
    assert r.status_code == 202 and "waits in the" in r.text, r.text[-800:]


def test_a_viewer_reads_the_dashboard_and_changes_nothing(client: TestClient, svc: Services) -> None:
    """The API's viewer role holds in the dashboard too: log in and read, but every form that
    changes something is refused (403), and logging out still works."""
    csrf = login(client, svc.auth.create_token("viewer", "team-b"))
    assert "team-b/b1" in names(client.get("/ui/workloads").text)
    r = client.post("/ui/workloads", content=f"csrf={csrf}&name=v1&flavor=tiny", headers=FORM)
    assert r.status_code == 403 and "read-only" in r.text
    assert client.post("/ui/whatif", content=f"csrf={csrf}", headers=FORM).status_code == 403
    assert "v1" not in {w.name for w in svc.workloads.list_workloads("team-b")}
    assert client.post("/ui/logout", content=f"csrf={csrf}", headers=FORM).status_code == 303


def test_posts_need_the_csrf_value_and_the_same_origin(client: TestClient, admin_token: str) -> None:
    csrf = login(client, admin_token)
    body = "name=c1&flavor=tiny&project=demo"
    assert client.post("/ui/workloads", content=body, headers=FORM).status_code == 403
    assert client.post("/ui/workloads", content=f"csrf={'0' * 64}&{body}", headers=FORM).status_code == 403
    r = client.post("/ui/workloads", content=f"csrf={csrf}&{body}",
                    headers={**FORM, "Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/ui/workloads", content=f"csrf={csrf}&{body}",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    r = client.post("/ui/workloads", content=f"csrf={csrf}&{body}",
                    headers={**FORM, "Origin": "http://testserver"})
    assert r.status_code == 303
    r = client.post("/ui/login", content=f"token={admin_token}", headers={**FORM, "Origin": "http://evil.example"})
    assert r.status_code == 403


def test_login_never_redirects_off_the_dashboard(client: TestClient, admin_token: str) -> None:
    for target in ("https://evil.example/", "//evil.example/ui", "/v1/pools", "javascript:alert(1)"):
        r = client.post("/ui/login", content=f"token={admin_token}&next={target}", headers=FORM)
        assert r.status_code == 303 and r.headers["location"] == "/ui/pools", target


def test_bad_query_values_are_4xx_pages(client: TestClient, admin_token: str) -> None:
    login(client, admin_token)
    r = client.get("/ui/workloads/a%20b/x")
    assert r.status_code == 422 and "project: names are 1..63 letters" in r.text  # the API's wording
    for path, status in (("/ui/hosts?resource=bogus", 422), ("/ui/hosts?resource=a%20b", 422),
                         ("/ui/pools/nope", 404), ("/ui/workloads/demo/nope", 404),
                         ("/ui/workloads?project=nope", 404)):
        r = client.get(path)
        assert r.status_code == status, path
        assert r.headers["content-type"].startswith("text/html")


def wait_final(svc: Services, task_id: int, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while (state := svc.tasks.get_task(task_id).state) in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    return state


def submit_whatif(client: TestClient, csrf: str, body: str) -> int:
    r = client.post("/ui/whatif", content=f"csrf={csrf}&{body}", headers=FORM)
    assert r.status_code == 303, r.text[-600:]
    m = re.fullmatch(r"/ui/whatif/(\d+)", r.headers["location"])
    assert m, r.headers["location"]
    return int(m.group(1))


def test_whatif_runs_as_a_task_and_stays_stored(client: TestClient, svc: Services, admin_token: str) -> None:
    csrf = login(client, admin_token)
    first = submit_whatif(client, csrf, "pool=demo&policies=lr-mmt&steps=12&interval=300")
    assert wait_final(svc, first) == "failed"  # nothing recorded yet: the run says so
    page = client.get(f"/ui/whatif/{first}").text
    assert "no utilization recorded" in page and "hx-get" not in page
    ws = [w for w in svc.workloads.list_workloads() if w.state == "running"]
    svc.utilization.record_utilization([((w.project, w.name), 1_700_000_000.0 + 300 * k, 0.2 + 0.05 * (k % 5))
                                        for w in ws for k in range(24)])
    run = submit_whatif(client, csrf, "pool=demo&policies=lr-mmt,thr-mmt-0.7&steps=12")
    t = svc.tasks.get_task(run)
    assert t.kind == "whatif" and t.project is None and t.params["policies"] == ["lr-mmt", "thr-mmt-0.7"]
    assert wait_final(svc, run) == "succeeded", svc.tasks.get_task(run).error
    r = client.get(f"/ui/whatif/{run}")
    assert r.status_code == 200
    assert re.findall(r"<tr><td>([^<]+)</td>", r.text.split('id="whatif-results"')[1])[:3] == \
        ["as-is", "lr-mmt-1.2", "thr-mmt-0.7"]
    assert r.text.count("data-chart") == 3
    status = client.get(f"/ui/whatif/{run}/status")
    assert status.status_code == 200 and status.headers["HX-Refresh"] == "true"  # ended: reload the page
    listing = client.get("/ui/whatif").text
    assert f'data-run="{run}"' in listing and f'data-run="{first}"' in listing
    result = svc.tasks.get_task(run).result
    assert result is not None and result["steps"] == 12 and len(result["runs"]) == 3
    assert all(len(x["series"]["active_hosts"]) == len(x["series"]["time_s"]) for x in result["runs"])
    for body, status_code, text in (("policies=nope-x", 422, "unknown policy"),
                                    ("policies=a,b,c,d,e", 422, "1..4"),
                                    ("steps=1", 422, "2..2016"), ("steps=x", 422, "whole number"),
                                    ("pool=nope", 404, "not found"), ("policies=lr-mmt,", 422, "comma")):
        r = client.post("/ui/whatif", content=f"csrf={csrf}&{body}", headers=FORM)
        assert r.status_code == status_code and text in r.text, (body, r.status_code)
    for path in (f"/ui/whatif/{2**63}", "/ui/whatif/0", "/ui/whatif/x"):
        assert client.get(path).status_code == 422, path
    migrate = svc.workloads.submit_migrate("demo", "w1")
    assert client.get(f"/ui/whatif/{migrate.id}").status_code == 404  # a task, but not a what-if run
    wait_final(svc, migrate.id)
    # members: the what-if reads every project, so it is for admins, like an admin-only API route
    login(client, svc.auth.create_token("member", "team-b"))
    for path in ("/ui/whatif", f"/ui/whatif/{run}", f"/ui/whatif/{run}/status"):
        assert client.get(path).status_code == 403, path


def test_a_task_page_follows_the_task(client: TestClient, svc: Services, admin_token: str) -> None:
    login(client, admin_token)
    t = svc.workloads.submit_migrate("demo", "w1")
    assert wait_final(svc, t.id) == "succeeded"
    r = client.get(f"/ui/tasks/{t.id}")
    assert r.status_code == 200 and 'id="task-log"' in r.text and "hx-get" not in r.text
    assert '"to":' in r.text.replace("&#34;", '"')  # the result (where it went)
    status = client.get(f"/ui/tasks/{t.id}/status")
    assert status.status_code == 200 and status.headers["HX-Refresh"] == "true"
    assert f'href="/ui/tasks/{t.id}"' in client.get("/ui/tasks").text
    for path, code in ((f"/ui/tasks/{2**62}", 404), ("/ui/tasks/0", 422), ("/ui/tasks/x", 422)):
        assert client.get(path).status_code == code, path
    login(client, svc.auth.create_token("member", "team-b"))
    assert client.get(f"/ui/tasks/{t.id}").status_code == 404  # another project's task, as in the API


def test_an_empty_pool_renders(client: TestClient, svc: Services, admin_token: str) -> None:
    svc.catalog.create_pool("empty")
    login(client, admin_token)
    r = client.get("/ui/pools/empty")
    assert r.status_code == 200 and "No workload runs here" in r.text
    assert client.get("/ui/pools").status_code == 200


def test_static_files_are_vendored_with_their_licences(client: TestClient) -> None:
    for path in ("/ui/static/vendor/htmx.min.js", "/ui/static/vendor/uPlot.iife.min.js",
                 "/ui/static/vendor/uPlot.min.css", "/ui/static/app.js", "/ui/static/app.css"):
        assert client.get(path).status_code == 200, path
    vendor = Path(__file__).resolve().parents[2] / "src" / "poolvisor" / "ui" / "static" / "vendor"
    assert "Zero-Clause BSD" in (vendor / "htmx.LICENSE").read_text()
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    html = (Path(vendor).parents[1] / "templates" / "base.html").read_text()
    assert "http://" not in html and "https://" not in html, "no CDN: every script and style is local"


def test_the_dashboard_is_not_in_the_openapi_document(client: TestClient) -> None:
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/ui")]


def test_alerts_panel_shows_and_acknowledges_the_callers_alerts(client: TestClient, svc: Services,
                                                                admin_token: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Real alerts from svc.alerts: a fleet alert (pool demo nearly full, for admins only) and
    team-b's quota alert; a member of team-b sees and acknowledges its own only."""
    login(client, admin_token)
    assert "No alerts." in client.get("/ui/events").text
    monkeypatch.setattr(svc.alerts, "thresholds", dataclasses.replace(svc.alerts.thresholds, pool_full=1e-9))
    svc.quotas.set_quota("team-b", {"workloads": 1})
    try:
        svc.alerts.evaluate()
        fleet = [a for a in svc.alerts.list_alerts() if a.subject == "pool/demo"]
        (mine,) = svc.alerts.list_alerts("team-b")
        assert len(fleet) == 1 and mine.rule == "quota_nearly_exhausted"
        page = client.get("/ui/events").text
        assert 'id="alerts"' in page and "pool demo" in page and "project team-b" in page
        issued = svc.auth.issue_token("member", "team-b")
        csrf = login(client, issued.token)
        page = client.get("/ui/events").text
        assert "project team-b" in page and "pool demo" not in page
        assert client.post(f"/ui/alerts/{fleet[0].id}/ack", content=f"csrf={csrf}",
                           headers=FORM).status_code == 404
        r = client.post(f"/ui/alerts/{mine.id}/ack", content=f"csrf={csrf}", headers=FORM)
        assert r.status_code == 303
        assert svc.alerts.get_alert(mine.id).acked_by == f"member-token-{issued.record.id}"
        assert "acknowledged" in client.get("/ui/events").text
        assert client.post(f"/ui/alerts/{mine.id}/ack", content="", headers=FORM).status_code == 403
    finally:
        svc.quotas.set_quota("team-b", {})
        monkeypatch.undo()
        svc.alerts.evaluate()  # both conditions cleared: resolved
    assert svc.alerts.count_active() == 0


def test_the_dashboard_reaches_rows_only_through_services() -> None:
    """Like the API (tests/api/test_api_layering.py): no module of poolvisor.ui imports the store."""
    import ast

    import poolvisor.ui

    root = Path(poolvisor.ui.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {m}" for m in mods
                          if m.startswith(("poolvisor.store", "sqlalchemy"))]
    assert offenders == []
