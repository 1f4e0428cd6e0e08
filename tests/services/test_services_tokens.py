"""Token expiry and revocation in the services, and how `serve` start-up treats revoked tokens."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from poolvisor.cli.client import token_file
from poolvisor.cli.serve import ensure_admin_token, write_token
from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.services import open_services


def test_expiry_revocation_and_status(svc):
    admin = svc.auth.bootstrap_admin_token()
    svc.catalog.create_project("demo")
    issued = svc.auth.issue_token("member", "demo", expires_in=3600, label="ci")
    who, why = svc.auth.token_status(issued.token)
    assert who is not None and why is None and who.expires_at == issued.record.expires_at
    assert svc.auth.token_status("pv_nope") == (None, "unknown")
    rec = svc.auth.revoke_token(issued.record.id, project="demo")
    assert rec.state == "revoked" and svc.auth.token_status(issued.token) == (None, "revoked")
    assert svc.auth.revoke_token(issued.record.id).revoked_at == rec.revoked_at  # idempotent
    with pytest.raises(NotFoundError):
        svc.auth.revoke_token(svc.auth.authenticate(admin).token_id, project="demo")  # not that project's
    with pytest.raises(NotFoundError):
        svc.auth.revoke_token(10_000)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidInputError):
            svc.auth.revoke_token(bad)
    for bad in (0, -1, float("nan"), float("inf"), 1e12, True):
        with pytest.raises(InvalidInputError):
            svc.auth.issue_token("member", "demo", expires_in=bad)
    with pytest.raises(InvalidInputError):
        svc.auth.issue_token("member", "demo", label="a\x1bb")
    assert [t.state for t in svc.auth.list_tokens("demo")] == ["revoked"]


def test_concurrent_revocations_keep_one_admin(db_url):
    """Two admins each revoking the other at once: one must fail, one admin stays valid."""
    svcs = [open_services(db_url) for _ in range(2)]
    try:
        a = svcs[0].auth.bootstrap_admin_token()
        b = svcs[0].auth.create_token("admin")
        ids = [svcs[0].auth.authenticate(t).token_id for t in (a, b)]
        barrier, results = threading.Barrier(2), []

        def revoke(k):
            barrier.wait()
            try:
                svcs[k].auth.revoke_token(ids[1 - k])
                results.append("revoked")
            except ConflictError:
                results.append("conflict")

        ts = [threading.Thread(target=revoke, args=(k,)) for k in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert sorted(results) == ["conflict", "revoked"]
        assert [t.state for t in svcs[0].auth.list_tokens()].count("active") == 1
    finally:
        for s in svcs:
            s.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POOLVISOR_TOKEN", raising=False)
    return tmp_path / "home"


def test_a_revoked_file_token_is_replaced_at_start(home, lite):
    ensure_admin_token(lite)
    first = token_file().read_text().strip()
    spare = lite.auth.create_token("admin")
    lite.auth.revoke_token(lite.auth.authenticate(first).token_id)
    note = ensure_admin_token(lite)  # the file's token is no longer valid: a new one is written
    second = token_file().read_text().strip()
    assert "(new)" in note and second != first and lite.auth.authenticate(second).role == "admin"
    assert token_file().stat().st_mode & 0o777 == 0o600 and lite.auth.authenticate(spare) is not None


def test_a_revoked_env_token_is_not_brought_back(home, lite, monkeypatch):
    lite.auth.bootstrap_admin_token()
    chosen = "operator-chosen-token-123"
    lite.auth.adopt_admin_token(chosen)
    lite.auth.revoke_token(lite.auth.authenticate(chosen).token_id)
    monkeypatch.setenv("POOLVISOR_TOKEN", chosen)
    with pytest.raises(InvalidInputError, match="revoked"):
        ensure_admin_token(lite)
    assert lite.auth.authenticate(chosen) is None


def test_write_token_is_atomic_and_private(tmp_path):
    path = tmp_path / "cfg" / "token"
    write_token(path, "pv_one")
    path.chmod(0o644)  # even a file someone loosened comes back private
    write_token(path, "pv_two")
    assert path.read_text() == "pv_two\n" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token"]


def test_replicas_adopting_the_same_chosen_token_at_once_both_start(svc, db_url):
    """Two replicas starting together on one database adopt the same POOLVISOR_TOKEN: the one
    whose INSERT loses to the other's reads the row again and accepts it (it exited on the
    unique-key violation: seen in CI with two PostgreSQL replicas of `bench api`)."""
    from sqlalchemy.orm import Session

    chosen = "pv_shared_admin_token_for_replicas_0123"
    other = open_services(db_url)
    try:
        real = Session.scalars
        missed: list[bool] = []

        def late_read(self, stmt, *a, **k):  # this replica's lookup ran just before the other's commit
            if not missed and "tokens" in str(stmt):
                missed.append(True)
                other.auth.adopt_admin_token(chosen)

                class _Nothing:
                    def first(self):
                        return None

                return _Nothing()
            return real(self, stmt, *a, **k)

        Session.scalars = late_read  # type: ignore[method-assign]
        try:
            svc.auth.adopt_admin_token(chosen)  # must not raise the unique-key conflict
        finally:
            Session.scalars = real  # type: ignore[method-assign]
        assert missed
        assert svc.auth.token_status(chosen)[0] is not None
    finally:
        other.close()
