"""store/prepared.py: a statement run on the DBAPI cursor behaves as SQLAlchemy's execution of it
(same SQL, the same typed values in and out, Python column defaults, errors wrapped the same way,
cursor listeners called), and its raw savepoint rolls a failed block back alone, on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import Table, bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from svc_helpers import small_cluster

from poolvisor.domain.errors import ConflictError
from poolvisor.services import Services
from poolvisor.services.base import as_utc
from poolvisor.services.leases import utcnow
from poolvisor.store.prepared import Prepared, savepoint
from poolvisor.store.rows import EventRow, FlavorRow, HostRow, WorkloadRow

_EV = cast(Table, EventRow.__table__)
_W, _H = cast(Table, WorkloadRow.__table__), cast(Table, HostRow.__table__)


def test_rows_and_values_are_typed_as_sqlalchemy_gives_them(svc: Services) -> None:
    small_cluster(svc)
    svc.workloads.create_workload("demo", "a", flavor="unit")
    q = (select(_W.c.id, _W.c.demand, _W.c.created_at, _W.c.explanation, _H.c.name.label("host"),
                (_W.c.priority == 0).label("zero"))
         .join(_H, _H.c.id == _W.c.host_id).where(_W.c.name == bindparam("n"), _W.c.state.in_(("running",))))
    p = Prepared(q)

    def both(s: Session) -> tuple[Any, Any]:
        return s.connection().execute(q, {"n": "a"}).one(), p.first(s, {"n": "a"})

    want, got = svc.store.run(both, write=False)
    assert tuple(got) == tuple(want) and got._fields == ("id", "demand", "created_at", "explanation", "host",
                                                          "zero")
    assert isinstance(got.demand, dict) and got.zero is True and as_utc(got.created_at) <= utcnow()
    assert svc.store.run(lambda s: p.all(s, {"n": "nope"}), write=False) == []


def test_an_insert_evaluates_column_defaults_and_its_cursor_listeners_see_it(svc: Services) -> None:
    ins = Prepared(insert(_EV), keys=("kind", "subject", "message", "project", "data", "severity"))
    seen: list[str] = []

    def note(_conn, _cur, stmt, *_a) -> None:  # type: ignore[no-untyped-def]
        seen.append(stmt)

    event.listen(svc.store.engine, "before_cursor_execute", note)
    try:
        before = utcnow()
        svc.store.run(lambda s: ins.many(s, [
            {"kind": "test.one", "subject": "x/1", "message": "m", "project": None, "data": {"k": [1]},
             "severity": "info"},
            {"kind": "test.two", "subject": "x/2", "message": "m", "project": "p", "data": {},
             "severity": "warning"}]))
    finally:
        event.remove(svc.store.engine, "before_cursor_execute", note)
    assert [q for q in seen if q.startswith("INSERT INTO events")]
    rows = svc.store.run(lambda s: s.execute(select(EventRow.kind, EventRow.time, EventRow.data)
                                             .where(EventRow.kind.like("test.%")).order_by(EventRow.id)).all(),
                         write=False)
    assert [(k, d) for k, _t, d in rows] == [("test.one", {"k": [1]}), ("test.two", {})]
    assert all(as_utc(t) >= before.replace(microsecond=0) for _k, t, _d in rows)


def test_errors_are_wrapped_as_sqlalchemy_wraps_them(svc: Services) -> None:
    small_cluster(svc)
    dup = Prepared(insert(cast(Table, FlavorRow.__table__)), keys=("name", "demand"))
    with pytest.raises(IntegrityError), Session(svc.store.engine) as s, s.begin():
        dup.rowcount(s, {"name": "unit", "demand": {"vcpu": 1}})
    with pytest.raises(ConflictError):  # what Store makes of it, as for any IntegrityError
        svc.store.run(lambda s: dup.rowcount(s, {"name": "unit", "demand": {"vcpu": 1}}))


def test_a_failed_savepoint_is_rolled_back_alone(svc: Services) -> None:
    small_cluster(svc)
    bump = Prepared(update(_H).where(_H.c.name == bindparam("h")).values(generation=_H.c.generation + 1))
    gens = lambda: dict(svc.store.run(  # noqa: E731
        lambda s: s.execute(select(HostRow.name, HostRow.generation)).all(), write=False))
    g0 = gens()

    def tx(s: Session) -> list[str]:
        out = []
        for h in ("h0", "h1", "h2"):
            try:
                with savepoint(s):
                    bump.rowcount(s, {"h": h})
                    if h == "h1":
                        s.add(EventRow(kind="test.orm", subject="x", message="", data={}))
                        s.flush()
                        raise ConflictError("this one fails")
                out.append(h)
            except ConflictError:
                pass
        assert not s.new and len(s.identity_map) == 0  # the failed block's object is gone with it
        return out

    assert svc.store.run(tx) == ["h0", "h2"]
    g1 = gens()
    assert (g1["h0"], g1["h1"], g1["h2"]) == (g0["h0"] + 1, g0["h1"], g0["h2"] + 1)
    assert not svc.store.run(
        lambda s: s.execute(select(EventRow.id).where(EventRow.kind == "test.orm")).all(), write=False)

    def with_orm(s: Session) -> None:  # a session holding ORM objects: the ORM's own savepoint
        h = s.scalars(select(HostRow).where(HostRow.name == "h0")).one()
        h.generation += 10
        with pytest.raises(ConflictError), savepoint(s):
            h.generation += 100
            s.flush()
            raise ConflictError("rolled back")
        assert h.generation == g1["h0"] + 10  # (expired by the ORM's rollback, read again)

    svc.store.run(with_orm)
    assert gens()["h0"] == g1["h0"] + 10


def _ev(kind: str) -> dict[str, Any]:
    return {"kind": kind, "subject": "x/1", "message": "m", "project": None, "data": {}, "severity": "info"}


def test_deferred_rows_are_sent_together_before_the_commit_and_dropped_with_their_savepoint(
        svc: Services) -> None:
    from poolvisor.store.prepared import defer, flush_deferred

    ins = Prepared(insert(_EV), keys=("kind", "subject", "message", "project", "data", "severity"))
    many: list[int] = []

    def note(_conn, _cur, stmt, params, _ctx, executemany) -> None:  # type: ignore[no-untyped-def]
        if stmt.startswith("INSERT INTO events"):
            many.append(len(params) if executemany else -1)

    def count(s: Session) -> int:
        return len(s.execute(select(EventRow.id).where(EventRow.kind.like("later.%"))).all())

    def tx(s: Session) -> tuple[int, int]:
        ins.later(s, _ev("later.now"))  # not deferring: sent at once
        defer(s)
        ins.later(s, _ev("later.a"))
        try:
            with savepoint(s):
                ins.later(s, _ev("later.dropped"))
                raise RuntimeError("rolled back alone")
        except RuntimeError:
            pass
        with savepoint(s):
            ins.later(s, _ev("later.b"))
        held = count(s)
        flush_deferred(s)
        return held, count(s)

    event.listen(svc.store.engine, "before_cursor_execute", note)
    try:
        assert svc.store.run(tx) == (1, 3)  # queued ones only after the flush
    finally:
        event.remove(svc.store.engine, "before_cursor_execute", note)
    assert many == [-1, 2]  # one at once, then the two kept in one executemany
    kinds = svc.store.run(lambda s: list(s.scalars(select(EventRow.kind).where(EventRow.kind.like("later.%"))
                                                   .order_by(EventRow.id))), write=False)
    assert kinds == ["later.now", "later.a", "later.b"]
