"""An existing database at revision 0002 (before leases and token expiry) upgrades to 0003 in place:
its tokens stay valid, its transient rows (no lease) are repaired by age, the schema equals the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData

from poolvisor.services import open_services
from poolvisor.services.auth import digest
from poolvisor.store.engine import Store
from poolvisor.store.migrate import alembic_config, current_revision, head_revision
from poolvisor.store.rows import Base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.real)])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("pg_url"))


def make_0002_database(url: str) -> None:
    """What poolvisor at revision 0002 left behind: an admin token, a host, a running workload, a
    create interrupted 10 minutes ago and one interrupted a second ago (no lease columns yet)."""
    store = Store(url)
    try:
        cfg = alembic_config()
        with store.engine.execution_options(poolvisor_write=True).begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
        assert current_revision(store) == "0002"
        now = datetime.now(UTC)
        with store.engine.execution_options(poolvisor_write=True).begin() as conn:
            md = MetaData()
            md.reflect(conn)
            t = md.tables
            assert "lease_owner" not in t["workloads"].c and "expires_at" not in t["tokens"].c
            conn.execute(t["projects"].insert(), [{"id": 1, "name": "demo", "created_at": now}])
            conn.execute(t["tokens"].insert(), [
                {"id": 1, "digest": digest("pv_old-admin-token"), "role": "admin", "project_id": None,
                 "created_at": now},
                {"id": 2, "digest": digest("pv_old-member-token"), "role": "member", "project_id": 1,
                 "created_at": now}])
            conn.execute(t["hosts"].insert(), [{"id": 1, "name": "h0", "pool_id": None, "state": "up",
                                                "labels": {}, "domain": "default", "max_workloads": 0,
                                                "workloads": 3, "generation": 3, "created_at": now}])
            conn.execute(t["host_resources"].insert(), [{"host_id": 1, "resource": "vcpu", "capacity": 8.0,
                                                         "overcommit": 1.0, "allocated": 3.0}])
            rows = [("ok", "running", now), ("old", "placing", now - timedelta(minutes=10)),
                    ("fresh", "placing", now - timedelta(seconds=1))]
            conn.execute(t["workloads"].insert(), [
                {"id": i, "project_id": 1, "name": n, "kind": "vm", "state": st, "host_id": 1,
                 "group_id": None, "flavor": None, "demand": {"vcpu": 1.0}, "priority": 0,
                 "explanation": None, "constraints": {}, "created_at": at, "updated_at": at}
                for i, (n, st, at) in enumerate(rows, 1)])
            conn.execute(t["allocations"].insert(), [
                {"workload_id": i, "host_id": 1, "resource": "vcpu", "amount": 1.0} for i in (1, 2, 3)])
    finally:
        store.close()


def test_a_0002_database_upgrades(url: str) -> None:
    make_0002_database(url)
    svc = open_services(url)  # migrates to head, then repairs what is stale
    try:
        assert current_revision(svc.store) == head_revision()
        with svc.store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            c.rollback()
        admin = svc.auth.authenticate("pv_old-admin-token")
        member = svc.auth.authenticate("pv_old-member-token")
        assert admin is not None and admin.role == "admin" and admin.expires_at is None
        assert member is not None and member.project == "demo"
        assert {t.id: (t.state, t.label, t.expires_at) for t in svc.auth.list_tokens()} == \
            {1: ("active", "", None), 2: ("active", "", None)}
        # the old interrupted create (no lease, 10 min old) was rolled back; the fresh one may still
        # be in flight in an old-version process: left alone until it is LEGACY_STALE_S old
        assert {w.name: w.state for w in svc.workloads.list_workloads("demo")} == \
            {"ok": "running", "fresh": "placing"}
        report = svc.repair.check()
        assert report.ok and report.counts["in_flight"] == 1, report.violations
        assert not svc.repair.check(now=datetime.now(UTC) + timedelta(minutes=1)).ok
        # new-version features work on the upgraded rows
        svc.auth.revoke_token(2)
        assert svc.auth.authenticate("pv_old-member-token") is None
    finally:
        svc.close()


def test_0003_downgrades_and_upgrades_again(url: str) -> None:
    store = Store(url)
    try:
        cfg = alembic_config()
        steps = (("head", command.upgrade), ("0002", command.downgrade), ("head", command.upgrade))
        for target, step in steps:
            with store.engine.execution_options(poolvisor_write=True).begin() as conn:
                cfg.attributes["connection"] = conn
                step(cfg, target)
        assert current_revision(store) == head_revision()
        with store.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            c.rollback()
    finally:
        store.close()
