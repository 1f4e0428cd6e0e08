"""Alert rules and AlertService: raised once while the condition lasts (also across concurrent
evaluators), escalated, resolved when it clears, acknowledged; events with severities."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from poolvisor.demo.cluster import seed_demo
from poolvisor.domain.errors import ConflictError, NotFoundError
from poolvisor.observability import rules
from poolvisor.observability.rules import Thresholds
from poolvisor.services import Services
from poolvisor.services.alerts import AlertLoop
from poolvisor.store.rows import TaskRow

T = Thresholds()


# ---- the rules as functions of numbers ------------------------------------------------------------
def test_pool_nearly_full_rule() -> None:
    assert rules.pool_nearly_full("p", {"vcpu": 89}, {"vcpu": 100}, T) is None
    f = rules.pool_nearly_full("p", {"vcpu": 90, "memory_mib": 10}, {"vcpu": 100, "memory_mib": 100}, T)
    assert f is not None and f.severity == "warning" and f.data["resource"] == "vcpu"
    assert f.subject == "pool/p"
    f = rules.pool_nearly_full("p", {"memory_mib": 99}, {"vcpu": 100, "memory_mib": 100}, T)
    assert f is not None and f.severity == "critical" and f.data["resource"] == "memory_mib"
    assert rules.pool_nearly_full("p", {}, {"vcpu": 0}, T) is None  # an empty pool is not full


def test_quota_rule_is_fed_by_usage_and_limit() -> None:
    assert rules.quota_nearly_exhausted("a", {"vcpu": 5}, {"vcpu": 10}, T) is None
    f = rules.quota_nearly_exhausted("a", {"vcpu": 5, "workloads": 10}, {"vcpu": 10, "workloads": 10}, T)
    assert f is not None and f.project == "a" and f.severity == "critical"
    assert f.data["resource"] == "workloads"
    t = Thresholds(quota=0.5)
    assert rules.quota_nearly_exhausted("a", {"vcpu": 5}, {"vcpu": 10}, t) is not None


def test_sla_and_stuck_task_rules() -> None:
    assert rules.sla_violation("h", {"vcpu": 64}, {"vcpu": 64}, T) is None  # saturated, not over
    f = rules.sla_violation("h", {"vcpu": 72}, {"vcpu": 64, "memory_mib": 10}, T)
    assert f is not None and f.severity == "warning" and f.data["ratio"] == pytest.approx(72 / 64, abs=1e-4)
    f = rules.sla_violation("h", {"vcpu": 90}, {"vcpu": 64}, T)
    assert f is not None and f.severity == "critical"
    assert rules.stuck_task(1, "migrate", "w", None, "running", 10, None, T) is None
    assert rules.stuck_task(1, "migrate", "w", None, "running", 10, 30, T) is None  # within the grace
    f = rules.stuck_task(1, "migrate", "w", "p", "running", 10, 120, T)
    assert f is not None and f.project == "p" and "lease expired" in f.message
    f = rules.stuck_task(1, "migrate", "w", None, "queued", 7200, None, T)
    assert f is not None and "deadline" in f.message


@pytest.mark.parametrize("kw", [{"pool_full": 0}, {"quota": 1.5}, {"sla_over": 0.9}, {"task_deadline_s": 0},
                                {"pool_full": float("nan")}])
def test_bad_thresholds(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Thresholds(**kw)


# ---- the service ----------------------------------------------------------------------------------
def _events(svc: Services, kind: str) -> list[Any]:
    return [e for e in svc.events.list_events(limit=1000) if e.kind == kind]


def test_host_down_raised_once_then_resolved(svc: Services) -> None:
    seed_demo(svc, 3)
    host = svc.hosts.list_hosts()[0].name
    assert svc.alerts.evaluate().raised == []
    svc.sim.fail_host(host)
    first = svc.alerts.evaluate()
    again = svc.alerts.evaluate()
    assert len(first.raised) == 1 and again.raised == [] and again.active == 1
    (a,) = svc.alerts.list_alerts()
    assert (a.rule, a.subject, a.severity, a.project, a.state) == ("host_down", f"host/{host}", "critical",
                                                                    None, "active")
    raised = _events(svc, "alert.raised")
    assert len(raised) == 1 and raised[0].severity == "critical" and raised[0].data["alert"] == a.id
    svc.hosts.set_host_state(host, "up")
    done = svc.alerts.evaluate()
    assert done.resolved == [a.id] and svc.alerts.list_alerts() == []
    (r,) = svc.alerts.list_alerts(state="resolved")
    assert r.resolved_at is not None and len(_events(svc, "alert.resolved")) == 1
    svc.sim.fail_host(host)  # the same condition again: a new alert
    assert len(svc.alerts.evaluate().raised) == 1 and len(svc.alerts.list_alerts(state=None)) == 2


def test_pool_nearly_full_escalates_and_clears(lite: Services) -> None:
    svc = lite
    seed_demo(svc, 2)
    svc.alerts.thresholds = Thresholds(pool_full=0.001, critical=0.5)
    svc.workloads.create_workload("demo", "w1", flavor="small")
    svc.alerts.evaluate()
    (a,) = svc.alerts.list_alerts(rule="pool_nearly_full")
    assert a.severity == "warning" and a.subject == "pool/demo"
    svc.alerts.thresholds = Thresholds(pool_full=0.001, critical=0.002)
    ev = svc.alerts.evaluate()
    assert ev.escalated == [a.id] and svc.alerts.get_alert(a.id).severity == "critical"
    assert len(_events(svc, "alert.escalated")) == 1
    svc.workloads.delete_workload("demo", "w1")
    assert svc.alerts.evaluate().resolved == [a.id]


def test_quota_hook_scopes_to_the_project(lite: Services) -> None:
    svc = lite
    seed_demo(svc, 1)
    svc.catalog.create_project("acme")
    usage = {"vcpu": 95.0}
    svc.alerts.quota_source = lambda: [("acme", usage, {"vcpu": 100.0})]
    svc.alerts.evaluate()
    (a,) = svc.alerts.list_alerts("acme")
    assert a.rule == "quota_nearly_exhausted" and a.project == "acme"
    assert svc.alerts.list_alerts("demo") == []
    with pytest.raises(NotFoundError):
        svc.alerts.get_alert(a.id, "demo")
    with pytest.raises(NotFoundError):
        svc.alerts.ack(a.id, "demo", "x")
    usage["vcpu"] = 10.0
    assert svc.alerts.evaluate().resolved == [a.id]


def test_a_project_filling_its_real_quota_raises_the_quota_alert(lite: Services) -> None:
    """The quota service feeds the rule: no hook set by hand, a quota set and used for real."""
    svc = lite
    seed_demo(svc, 2)
    svc.catalog.create_project("acme")
    svc.quotas.set_quota("acme", {"vcpu": 4, "workloads": 10})
    svc.workloads.create_workload("acme", "w1", demand={"vcpu": 2, "memory_mib": 256})
    assert [a.rule for a in svc.alerts.list_alerts("acme")] == [] and not svc.alerts.evaluate().raised
    svc.workloads.create_workload("acme", "w2", demand={"vcpu": 2, "memory_mib": 256})
    svc.alerts.evaluate()
    (a,) = svc.alerts.list_alerts("acme")
    assert a.rule == "quota_nearly_exhausted" and a.severity == "critical" and "vcpu" in a.message
    svc.workloads.delete_workload("acme", "w2")
    assert svc.alerts.evaluate().resolved == [a.id]


def test_sla_violation_from_measured_use(lite: Services, monkeypatch: Any) -> None:
    svc = lite
    seed_demo(svc, 2)
    hosts = svc.hosts.list_hosts()
    hot = dataclasses.replace(hosts[0], used={"vcpu": hosts[0].capacity["vcpu"] * 1.1})
    monkeypatch.setattr(svc.hosts, "list_hosts", lambda *a, **k: [hot, *hosts[1:]])
    svc.alerts.evaluate()
    (a,) = svc.alerts.list_alerts(rule="sla_violation")
    assert a.subject == f"host/{hot.name}" and a.severity == "warning"


def test_stuck_task(lite: Services) -> None:
    svc = lite
    old = datetime.now(UTC) - timedelta(hours=2)
    svc.store.run(lambda s: s.add(TaskRow(kind="migrate", state="running", project="p1",
                                          subject="workload/p1/x", created_at=old, updated_at=old,
                                          lease_owner="gone", lease_expires=old + timedelta(seconds=5))))
    svc.alerts.evaluate()
    (a,) = svc.alerts.list_alerts(rule="stuck_task")
    assert a.project == "p1" and a.severity == "critical" and a.subject.startswith("task/")


def test_ack(lite: Services) -> None:
    svc = lite
    seed_demo(svc, 1)
    host = svc.hosts.list_hosts()[0].name
    svc.sim.fail_host(host)
    svc.alerts.evaluate()
    (a,) = svc.alerts.list_alerts()
    acked = svc.alerts.ack(a.id, None, "admin-token-1")
    assert acked.acked_at is not None and acked.acked_by == "admin-token-1" and acked.state == "active"
    assert svc.alerts.ack(a.id, None, "someone-else") == acked  # idempotent
    assert len(_events(svc, "alert.acknowledged")) == 1
    with pytest.raises(NotFoundError):
        svc.alerts.ack(999, None, "x")
    svc.hosts.set_host_state(host, "up")
    svc.alerts.evaluate()
    with pytest.raises(ConflictError):
        svc.alerts.ack(a.id, None, "x")


def test_concurrent_evaluators_raise_one_alert(svc: Services) -> None:
    seed_demo(svc, 3)
    for h in svc.hosts.list_hosts():
        svc.sim.fail_host(h.name)
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def run() -> None:
        try:
            go.wait()
            svc.alerts.evaluate()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    active = svc.alerts.list_alerts()
    assert len(active) == 3 and len({a.subject for a in active}) == 3
    assert len(_events(svc, "alert.raised")) == 3


def test_alert_loop_on_the_wall_clock(lite: Services) -> None:
    svc = lite
    seed_demo(svc, 1)
    svc.sim.fail_host(svc.hosts.list_hosts()[0].name)
    loop = AlertLoop(svc.alerts, 0.05)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not svc.alerts.list_alerts() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(svc.alerts.list_alerts()) == 1
        time.sleep(0.2)
        assert loop.loop.steps >= 3 and len(svc.alerts.list_alerts(state=None)) == 1  # deduplicated
    finally:
        loop.stop()
    assert not loop.loop.running
