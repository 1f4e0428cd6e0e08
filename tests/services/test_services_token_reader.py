"""The token check on its own reused connection (services/auth.py TokenReader): still one read of
the database per check, so a revocation or an expiry by another replica holds for the very next
request; a broken connection falls back to the Session path."""

from __future__ import annotations

import time

from sqlalchemy import update

from poolvisor.services import open_services
from poolvisor.services.auth import TokenReader, digest
from poolvisor.store.rows import TokenRow


def test_a_revocation_by_another_replica_holds_at_once(db_url):
    a, b = open_services(db_url), open_services(db_url)  # two replicas on one database
    try:
        a.auth.bootstrap_admin_token()
        a.catalog.create_project("demo")
        issued = a.auth.issue_token("member", "demo", label="r")
        for _ in range(3):  # the reader's connection is made, used, and reused
            who, why = b.auth.token_status(issued.token)
            assert who is not None and why is None and who.project == "demo" and who.role == "member"
        reader = b.auth._token_reader()
        assert isinstance(reader, TokenReader) and len(reader._idle) == 1
        a.auth.revoke_token(issued.record.id)
        assert b.auth.token_status(issued.token) == (None, "revoked")  # the next check, same connection
        assert b.auth.token_status("pv_unknown") == (None, "unknown")
    finally:
        a.close()
        b.close()


def test_an_expiry_set_by_another_replica_holds_at_once(db_url):
    a, b = open_services(db_url), open_services(db_url)
    try:
        a.auth.bootstrap_admin_token()
        token = a.auth.create_token("viewer", expires_in=3600)
        who, _ = b.auth.token_status(token)
        assert who is not None and who.role == "viewer" and who.expires_at is not None
        past = who.expires_at.replace(year=who.expires_at.year - 1)
        a.store.run(lambda s: s.execute(update(TokenRow).where(TokenRow.digest == digest(token))
                                        .values(expires_at=past)))
        assert b.auth.token_status(token) == (None, "expired")
    finally:
        a.close()
        b.close()


def test_a_broken_connection_falls_back_and_is_dropped(lite):
    token = lite.auth.bootstrap_admin_token()
    assert lite.auth.authenticate(token) is not None
    reader = lite.auth._token_reader()
    assert isinstance(reader, TokenReader)
    reader._idle[0].close()  # e.g. a PostgreSQL restart closed it
    who = lite.auth.authenticate(token)  # answered through the Session path
    assert who is not None and who.role == "admin" and reader._idle == []
    assert lite.auth.authenticate(token) is not None and len(reader._idle) == 1  # a fresh one


def test_an_in_memory_database_uses_the_session_path():
    svc = open_services("sqlite://")
    try:
        token = svc.auth.bootstrap_admin_token()
        assert svc.auth.authenticate(token) is not None and svc.auth._token_reader() is None
    finally:
        svc.close()


def test_closing_the_services_closes_the_readers_connections(lite):
    token = lite.auth.bootstrap_admin_token()
    lite.auth.authenticate(token)
    reader = lite.auth._token_reader()
    assert isinstance(reader, TokenReader) and reader._idle
    lite.store.engine.dispose()
    assert reader._idle == []
    t0 = time.perf_counter()
    assert lite.auth.authenticate(token) is not None and time.perf_counter() - t0 < 5
