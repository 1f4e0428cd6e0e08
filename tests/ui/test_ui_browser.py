"""The dashboard in a real headless Chromium (Selenium) against a real `poolvisor serve` on loopback.

Every page must load without a browser console error; a workload created through the form
appears in the list; a member sees only its project; a screenshot of each page is written to
build/screenshots/. Chromium, chromedriver or selenium missing: skipped, or failed under
POOLVISOR_REQUIRE_REAL=1 (CI installs Debian's chromium and chromium-driver).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import require_real
from live_server import live_server

pytestmark = pytest.mark.real

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
ADMIN_TOKEN = "pv_ui_browser_test_admin_0123456789"
PAGE_WAIT_S = 10.0


def _selenium_ready() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return True


class Server:
    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc

    def api(self, method: str, path: str, token: str = ADMIN_TOKEN, **kw: Any) -> httpx.Response:
        r = httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                          **kw)
        assert r.status_code < 300, r.text
        return r


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ui-serve")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POOLVISOR_") or k == "POOLVISOR_REQUIRE_REAL"}
    env.update(HOME=str(tmp / "home"), POOLVISOR_HOME=str(tmp / "data"), POOLVISOR_TOKEN=ADMIN_TOKEN)
    with live_server(tmp, "--demo", "6", "--controller-interval", "0", "--demo-vms", "8", "--sim-durations",
                     "migrate=3", "--log-level", "warning", env=env, start_timeout=90) as live:
        yield Server(live.url, live.proc)
    text = live.log.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_real(_selenium_ready(), "selenium is not installed (pip install -e '.[test]')")
    require_real(os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK),
                 "Debian's chromium and chromium-driver are not installed "
                 "(apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def console_errors(drv: Any) -> list[str]:
    """Console messages of level SEVERE since the last read (JS errors, failed loads, CSP refusals)."""
    return [f"{e.get('source')}: {e.get('message')}" for e in drv.get_log("browser")
            if e.get("level") == "SEVERE"]


def visit(drv: Any, server: Server, path: str, shot: str, *, status_ok: bool = True) -> None:
    """Load a page, wait for the document and the charts, check the console, write a screenshot."""
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(server.url + path)
    wait_loaded(drv)
    WebDriverWait(drv, PAGE_WAIT_S).until(lambda d: d.execute_script(
        "return document.querySelectorAll('figure[data-chart]:not([data-drawn])').length") == 0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(SHOTS / f"{shot}.png"))
    if status_ok:
        assert not console_errors(drv), (path, console_errors(drv))


def wait_loaded(drv: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, PAGE_WAIT_S).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def submit(drv: Any, button: Any) -> None:
    """Click a form's button and wait for the next document (the old one goes stale first)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    old = drv.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(drv, 60).until(ec.staleness_of(old))
    wait_loaded(drv)


def log_in(drv: Any, server: Server, token: str) -> None:
    from selenium.webdriver.common.by import By

    drv.get(server.url + "/ui/login")
    wait_loaded(drv)
    drv.find_element(By.ID, "token").send_keys(token)
    submit(drv, drv.find_element(By.ID, "login"))
    assert drv.current_url.endswith("/ui/pools"), drv.current_url


def log_out(drv: Any) -> None:
    from selenium.webdriver.common.by import By

    submit(drv, drv.find_element(By.CSS_SELECTOR, "form.logout button"))
    assert "/ui/login" in drv.current_url


def listed(drv: Any) -> set[str]:
    from selenium.webdriver.common.by import By

    return {e.get_attribute("data-workload") for e in drv.find_elements(By.CSS_SELECTOR, "tr[data-workload]")}


def test_admin_pages_load_and_create_a_workload(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    drv = browser
    visit(drv, server, "/ui/pools", "00-redirect-to-login")
    assert "/ui/login" in drv.current_url
    log_in(drv, server, ADMIN_TOKEN)
    assert console_errors(drv) == []
    visit(drv, server, "/ui/pools", "01-pools")
    assert drv.find_element(By.ID, "pool-demo")
    visit(drv, server, "/ui/pools/demo", "02-pool-demo")
    drawn = drv.find_elements(By.CSS_SELECTOR, "figure[data-drawn] canvas")
    assert len(drawn) >= 2, "the allocation and measured-use charts are drawn by uPlot"
    visit(drv, server, "/ui/hosts", "03-hosts-heatmap")
    assert len(drv.find_elements(By.CSS_SELECTOR, ".heat .cell")) == 6
    visit(drv, server, "/ui/hosts?resource=memory_mib", "03b-hosts-heatmap-memory")
    visit(drv, server, "/ui/events", "07-events")
    assert drv.find_elements(By.CSS_SELECTOR, "#events tbody tr")

    # create through the form; the workload appears in the list with its placement explanation
    visit(drv, server, "/ui/workloads", "04-workloads")
    before = listed(drv)
    assert "demo/vm-000" in before
    drv.find_element(By.ID, "new-project").send_keys("demo")
    drv.find_element(By.ID, "new-name").send_keys("from-ui")
    Select(drv.find_element(By.ID, "new-flavor")).select_by_value("small")
    Select(drv.find_element(By.ID, "new-pool")).select_by_value("demo")
    submit(drv, drv.find_element(By.ID, "create"))
    assert drv.current_url.endswith("/ui/workloads/demo/from-ui"), drv.current_url
    assert drv.find_element(By.ID, "workload-state").text == "running"
    assert "Rule:" in drv.find_element(By.ID, "explanation").text
    visit(drv, server, "/ui/workloads/demo/from-ui", "05-workload-detail")
    visit(drv, server, "/ui/workloads", "04b-workloads-after-create")
    assert listed(drv) == before | {"demo/from-ui"}
    assert server.api("GET", "/v1/workloads/from-ui?project=demo").json()["state"] == "running"
    # the filter forms: a project, then "all" (a blank field, which is no filter)
    Select(drv.find_element(By.ID, "project-filter")).select_by_value("demo")
    submit(drv, drv.find_element(By.CSS_SELECTOR, "form.inline button"))
    assert listed(drv) == {w for w in before | {"demo/from-ui"} if w.startswith("demo/")}
    Select(drv.find_element(By.ID, "project-filter")).select_by_value("")
    submit(drv, drv.find_element(By.CSS_SELECTOR, "form.inline button"))
    assert listed(drv) == before | {"demo/from-ui"} and console_errors(drv) == []

    # a migration runs as a task (3 s on the sim driver): the table follows it without a reload (htmx)
    server.api("POST", "/v1/workloads/from-ui/migrate?project=demo")
    visit(drv, server, "/ui/tasks", "06-tasks")
    state = drv.find_element(By.CSS_SELECTOR, "#task-rows tr[data-task] .state").text
    assert state in ("queued", "running"), state
    drv.execute_script("document.getElementById('task-rows').dataset.seen = '1'")
    WebDriverWait(drv, 20).until(lambda d: "succeeded" in d.find_element(
        By.CSS_SELECTOR, "#task-rows tr[data-task]").text)
    assert drv.execute_script("return document.getElementById('task-rows').dataset.seen") is None, \
        "the rows were replaced in place by htmx, not by a page load"
    assert drv.execute_script("return performance.getEntriesByType('navigation').length") == 1
    drv.save_screenshot(str(SHOTS / "06b-tasks-done.png"))
    assert console_errors(drv) == []
    submit(drv, drv.find_element(By.CSS_SELECTOR, "#task-rows tr[data-task] a"))
    assert drv.find_element(By.ID, "task-state").text == "succeeded"
    assert len(drv.find_elements(By.CSS_SELECTOR, "#task-log tbody tr")) >= 3
    visit(drv, server, drv.current_url.removeprefix(server.url), "06c-task-detail")

    # what-if on the demo pool's recorded day, charted
    visit(drv, server, "/ui/whatif", "08-whatif-form")
    Select(drv.find_element(By.ID, "whatif-pool")).select_by_value("demo")
    steps = drv.find_element(By.ID, "whatif-steps")
    steps.clear()
    steps.send_keys("96")
    submit(drv, drv.find_element(By.ID, "whatif-run"))
    assert "/ui/whatif/" in drv.current_url
    # the run is a task: its page follows it (htmx) and reloads itself with the results once it ends
    WebDriverWait(drv, 60).until(lambda d: d.find_elements(By.ID, "whatif-results"))
    wait_loaded(drv)
    WebDriverWait(drv, PAGE_WAIT_S).until(lambda d: d.execute_script(
        "return document.querySelectorAll('figure[data-chart]:not([data-drawn])').length") == 0)
    rows = drv.find_elements(By.CSS_SELECTOR, "#whatif-results tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows][0] == "as-is" and len(rows) == 3
    assert len(drv.find_elements(By.CSS_SELECTOR, "figure[data-drawn] canvas")) == 3
    drv.save_screenshot(str(SHOTS / "08b-whatif-results.png"))
    assert console_errors(drv) == []
    visit(drv, server, "/ui/whatif", "08c-whatif-stored-runs")
    assert len(drv.find_elements(By.CSS_SELECTOR, "#whatif-runs tr[data-run]")) == 1
    log_out(drv)


def test_member_sees_only_its_project(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    drv = browser
    server.api("POST", "/v1/projects", json={"name": "team-b"})
    server.api("POST", "/v1/workloads", json={"project": "team-b", "name": "b-one", "flavor": "tiny"})
    member = server.api("POST", "/v1/tokens", json={"role": "member", "project": "team-b"}).json()["token"]
    drv.delete_all_cookies()
    log_in(drv, server, member)
    visit(drv, server, "/ui/workloads", "10-member-workloads")
    assert listed(drv) == {"team-b/b-one"}
    assert drv.find_element(By.ID, "who").text == "member of team-b"
    visit(drv, server, "/ui/events", "11-member-events")
    projects = {td.text for td in drv.find_elements(By.CSS_SELECTOR, "#events tbody tr td:nth-child(4)")}
    assert projects == {"team-b"}
    visit(drv, server, "/ui/tasks", "12-member-tasks")
    assert not drv.find_elements(By.CSS_SELECTOR, "#task-rows tr[data-task]"), \
        "the admin's migration is not theirs"
    # another project's workload does not exist for them, the what-if is for admins (as in the API)
    visit(drv, server, "/ui/workloads/demo/vm-000", "13-member-other-project-404", status_ok=False)
    assert "not found" in drv.find_element(By.ID, "error-message").text
    visit(drv, server, "/ui/whatif", "14-member-whatif-403", status_ok=False)
    assert "admin" in drv.find_element(By.ID, "error-message").text
    console_errors(drv)  # the 404/403 documents log their status; drop them before the next page
    visit(drv, server, "/ui/pools", "15-member-pools")
    assert not drv.find_elements(By.LINK_TEXT, "What-if")
    log_out(drv)
