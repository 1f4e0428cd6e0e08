"""EventFilter on both databases: prefix matches stop at a boundary and treat LIKE wildcards
literally; `since` compares instants (aware and naive = UTC); events_after reads forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from poolvisor.services import Services
from poolvisor.services.base import ServiceBase
from poolvisor.services.events import EventFilter


def _add(svc: Services, kind: str, subject: str, project: str | None = None) -> None:
    svc.store.run(lambda s: ServiceBase._event(s, kind, subject, "m", project=project))


def test_filters(svc: Services) -> None:
    for kind, subject in (("ip_pool.created", "ip_pool/p/a"), ("ipxpool.created", "ipxpool/p/a"),
                          ("host.failed", "host/h_1"), ("host.failed", "host/hx1"),
                          ("hostile.x", "hostile/1")):
        _add(svc, kind, subject, "p" if "pool" in kind else None)
    names = [(e.kind, e.subject) for e in svc.events.list_events(where=EventFilter(kind="ip_pool"))]
    assert names == [("ip_pool.created", "ip_pool/p/a")]  # '_' is not a wildcard
    assert [e.subject for e in svc.events.list_events(where=EventFilter(subject="host/h_1"))] == ["host/h_1"]
    assert [e.kind for e in svc.events.list_events(where=EventFilter(kind="host"))] == ["host.failed"] * 2
    crit = svc.events.list_events(where=EventFilter(severity="critical"))
    assert {e.subject for e in crit} == {"host/h_1", "host/hx1"}
    assert {e.severity for e in crit} == {"critical"}
    now = datetime.now(UTC)
    assert len(svc.events.list_events(where=EventFilter(since=now - timedelta(minutes=5)))) == 5
    assert svc.events.list_events(where=EventFilter(since=now + timedelta(minutes=5))) == []
    naive = (now - timedelta(minutes=5)).replace(tzinfo=None)
    assert len(svc.events.list_events(where=EventFilter(since=naive))) == 5
    first = svc.events.list_events(limit=1000)[-1].id
    fwd = svc.events.events_after(first, EventFilter())
    assert [e.id for e in fwd] == sorted(e.id for e in fwd) and len(fwd) == 4
    assert svc.events.events_after(svc.events.last_event_id(), EventFilter()) == []
    assert [e.subject for e in svc.events.events_after(0, EventFilter(project="p"))] == ["ip_pool/p/a",
                                                                                          "ipxpool/p/a"]
