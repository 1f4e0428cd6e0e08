"""Hot statements compiled once, run on the transaction's DBAPI cursor.

A create and a delete send about sixteen short statements between them, and SQLAlchemy's
per-execution work around each (cache key, execution context, parameter processing, result
metadata, event dispatch) cost about ten times the statement itself in SQLite (~40 µs against
~4 µs). A `Prepared` statement is a Core statement compiled once per dialect into its SQL string,
its parameter order and the type processors of its parameters (JSON, SQLite's DATETIME) and of
its result columns; each run binds the caller's values in that order and executes on the DBAPI
cursor of the session's connection, inside the session's transaction, as SQLAlchemy would:

- the same SQL as SQLAlchemy sends (compiled by it, for this dialect);
- Python-side column defaults of an INSERT are evaluated per row, as SQLAlchemy's would be;
- `before_cursor_execute` listeners are still called (tests count statements with them);
- a DBAPI error is handled by the connection as SQLAlchemy handles it (wrapped into
  IntegrityError, OperationalError...; a lost connection invalidated).

Only for statements whose rows the ORM does not hold (Core statements on tables the transaction
does not keep ORM copies of, or after a flush): nothing here synchronizes the Session.

A statement whose result nobody reads (an event row) may be sent `later`: in a transaction that
defers (`defer`: the writer thread's group and batch transactions, store/group.py), its rows are
bound at once and sent together by `flush_deferred` before the commit, one executemany per
statement (on PostgreSQL one round trip instead of one per row); a savepoint rolled back drops the
rows queued inside it. Elsewhere `later` runs it at once.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

_CONN = "poolvisor.prepared.conn"  # Session.info: (the session's transaction, its Connection)
_SAVEPOINTS = "poolvisor.prepared.savepoints"  # Session.info: savepoints taken (their names)
_LATER = "poolvisor.prepared.later"  # Session.info: [(compiled, bound parameters)] while deferring


class _Compiled:
    __slots__ = ("sql", "positional", "slots", "bind_names", "row", "result_procs", "names", "types",
                 "dialect")

    def __init__(self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str] | None) -> None:
        c: Any = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        # literal IN lists are "expanding" parameters: rendered here, once (their values are fixed)
        defaults = c.construct_params(None, _check=False, _no_postcompile=True)
        ex = c._process_parameters_for_postcompile(defaults)
        self.sql: str = ex.statement
        self.positional = bool(c.positional)
        order = list(ex.positiontup) if self.positional else list(ex.parameters)
        procs = dict(c._bind_processors) | dict(ex.processors or {})
        # a caller's name for each bind (escaped names aside), the default value, the processor
        unescape = {v: k for k, v in (c.escaped_bind_names or {}).items()}
        prefetch = {col.key: col for col in (c.insert_prefetch or ())}
        slots = []
        for name in order:
            key = unescape.get(name, name)
            col = prefetch.get(key)
            default: Callable[[], Any] | None = None
            if col is not None and col.default is not None:
                d = col.default
                default = (lambda d=d: d.arg(None)) if d.is_callable else (lambda d=d: d.arg)
            slots.append((name, key, ex.parameters.get(name), procs.get(name), default))
        self.slots = tuple(slots)
        self.bind_names = tuple(name for name, *_ in slots)
        cols = list(getattr(c, "_result_columns", None) or ())
        self.names = tuple(rc.keyname for rc in cols)
        self.row = namedtuple("Row", self.names, rename=True) if cols else None
        self.types = tuple(rc.type for rc in cols)
        self.dialect = dialect
        self.result_procs: tuple[Any, ...] | None = None  # by the DBAPI's column types: first rows read

    def bind(self, params: Mapping[str, Any]) -> Any:
        values: list[Any] = []
        for _name, key, fixed, proc, default in self.slots:
            v = params[key] if key in params else default() if default is not None else fixed
            values.append(proc(v) if proc is not None else v)
        return tuple(values) if self.positional else dict(zip(self.bind_names, values, strict=True))

    def rows(self, cur: Any, raws: Sequence[Sequence[Any]]) -> list[Any]:
        assert self.row is not None
        procs = self.result_procs
        if procs is None:  # (PostgreSQL's processors depend on the type the server reports)
            procs = self.result_procs = tuple(
                t._cached_result_processor(self.dialect, d[1])
                for t, d in zip(self.types, cur.description, strict=True))
        make = self.row
        return [make(*(p(v) if p is not None else v for p, v in zip(procs, raw, strict=True)))
                for raw in raws]


class Prepared:
    """A Core statement run on the DBAPI cursor of a session's connection (see the module's doc).
    `keys`: an INSERT's column names given by the caller (the columns it compiles for)."""

    __slots__ = ("stmt", "keys", "_by_dialect")

    def __init__(self, stmt: ClauseElement, keys: Sequence[str] | None = None) -> None:
        self.stmt = stmt
        self.keys = tuple(keys) if keys is not None else None
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        c = self._by_dialect.get(dialect.name)
        if c is None:
            c = self._by_dialect[dialect.name] = _Compiled(self.stmt, dialect, self.keys)
        return c

    def _run(self, s: Session | Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
             many: bool) -> tuple[_Compiled, Any]:
        conn = connection(s)
        c = self._compiled(conn.dialect)
        bound: Any = [c.bind(p) for p in params] if many else c.bind(params)  # type: ignore[arg-type]
        return c, _execute(conn, c.sql, bound, many)

    def rowcount(self, s: Session | Connection, params: Mapping[str, Any]) -> int:
        """Run it; the rows it changed."""
        _c, cur = self._run(s, params, False)
        n = int(cur.rowcount)
        cur.close()
        return n

    def many(self, s: Session | Connection, params: Iterable[Mapping[str, Any]]) -> None:
        """Run it once per parameter set (the DBAPI's executemany)."""
        _c, cur = self._run(s, list(params), True)
        cur.close()

    def all(self, s: Session | Connection, params: Mapping[str, Any]) -> list[Any]:
        """Its rows (named tuples, their values as SQLAlchemy's types give them)."""
        c, cur = self._run(s, params, False)
        try:
            return c.rows(cur, cur.fetchall())
        finally:
            cur.close()

    def first(self, s: Session | Connection, params: Mapping[str, Any]) -> Any:
        """Its first row, or None (the statement's other rows are not read)."""
        c, cur = self._run(s, params, False)
        try:
            r = cur.fetchone()
            return None if r is None else c.rows(cur, [r])[0]
        finally:
            cur.close()

    def scalar(self, s: Session | Connection, params: Mapping[str, Any]) -> Any:
        """The first column of its first row, or None."""
        r = self.first(s, params)
        return None if r is None else r[0]

    def later(self, s: Session, params: Mapping[str, Any]) -> None:
        """Run it before the commit (its values bound now, defaults included), with the other rows
        deferred in this transaction (`defer`); at once when the transaction does not defer."""
        queue = s.info.get(_LATER)
        if queue is None:
            self.rowcount(s, params)
            return
        c = self._compiled(connection(s).dialect)
        queue.append((c, c.bind(params)))


class PreparedIn:
    """A `Prepared` statement with one expanding IN list, bound as `ids`, of any length (a refresh's
    changed hosts): compiled once per power-of-two length, the list padded with its last id (an id
    repeated in an IN list changes nothing), so a few compiled forms serve every length."""

    __slots__ = ("stmt", "_by_size")

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt  # (a Select with `bindparam("ids", expanding=True)`)
        self._by_size: dict[int, Prepared] = {}

    def all(self, s: Session | Connection, ids: Sequence[int], params: Mapping[str, Any] | None = None
            ) -> list[Any]:
        """Its rows for these ids (none for no ids), as `Prepared.all`."""
        if not ids:
            return []
        n = 1 << (len(ids) - 1).bit_length()
        p = self._by_size.get(n)
        if p is None:
            p = self._by_size[n] = Prepared(self.stmt.params(ids=[0] * n))
        bound = dict(params or {})
        for i in range(n):
            bound[f"ids_{i + 1}"] = ids[min(i, len(ids) - 1)]
        return p.all(s, bound)


def defer(s: Session) -> None:
    """From now on this transaction's `Prepared.later` statements wait for `flush_deferred`."""
    s.info.setdefault(_LATER, [])


def flush_deferred(s: Session) -> None:
    """Send the statements deferred so far: one executemany per run of the same statement, in the
    order they were queued. The transaction keeps deferring."""
    queue = s.info.get(_LATER)
    if not queue:
        return
    s.info[_LATER] = []
    conn = connection(s)
    i = 0
    while i < len(queue):
        c, j = queue[i][0], i
        while j < len(queue) and queue[j][0] is c:
            j += 1
        _execute(conn, c.sql, [b for _c, b in queue[i:j]], True).close()
        i = j


def _execute(conn: Connection, sql: str, bound: Any = None, many: bool = False) -> Any:
    """`sql` on a new DBAPI cursor of the connection (returned, to be read and closed); `bound`
    None: a statement without parameters."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        if conn.dispatch.before_cursor_execute:
            for fn in conn.dispatch.before_cursor_execute:
                fn(conn, cur, sql, bound, None, many)
        if many:
            cur.executemany(sql, bound)
        elif bound is None:
            cur.execute(sql)
        else:
            cur.execute(sql, bound)
    except Exception as e:
        cur.close()
        conn._handle_dbapi_exception(e, sql, bound, cur, None)
    return cur


@contextmanager
def savepoint(s: Session) -> Iterator[None]:
    """A SAVEPOINT around the block, rolled back (alone) when it raises: Session.begin_nested's
    effect on the database without its cost (two compiled statements and the ORM's nested
    transaction bookkeeping, ~100 µs a claim). Taken raw only while the session holds no ORM
    object: whatever the block loads or adds is then the block's own, and a rolled-back block's
    objects are expunged (as begin_nested would expire or expunge them); otherwise begin_nested.
    Rows deferred inside a block that raises (`Prepared.later`) are dropped with it."""
    queued = s.info.get(_LATER)
    mark = len(queued) if queued is not None else 0
    if len(s.identity_map) or s.new or s.deleted:
        try:
            with s.begin_nested():
                yield
        except BaseException:
            _drop_later(s, mark)
            raise
        return
    conn = connection(s)
    n = s.info[_SAVEPOINTS] = s.info.get(_SAVEPOINTS, 0) + 1
    name = f"pv_savepoint_{n}"
    _execute(conn, f"SAVEPOINT {name}").close()
    try:
        yield
        s.flush()  # (what the block left pending belongs inside the savepoint, as begin_nested does)
    except BaseException:
        _execute(conn, f"ROLLBACK TO SAVEPOINT {name}").close()
        _execute(conn, f"RELEASE SAVEPOINT {name}").close()
        _drop_later(s, mark)
        if len(s.identity_map) or s.new or s.deleted:
            s.expunge_all()
        raise
    if conn.dialect.name != "postgresql":
        _execute(conn, f"RELEASE SAVEPOINT {name}").close()
    # PostgreSQL: left open, one round trip less. The statements after it run in its
    # subtransaction, and a later savepoint nests in it (a rollback to that one rolls back only
    # what follows it); COMMIT commits them all, as RELEASE then COMMIT would. (The savepoints of a
    # transaction are few: a claim batch takes at most MAX_BATCH.)


def _drop_later(s: Session, mark: int) -> None:
    """The rows deferred since `mark` belonged to a savepoint rolled back: dropped with it."""
    queued = s.info.get(_LATER)
    if queued is not None:
        del queued[mark:]


def connection(s: Session | Connection) -> Connection:
    """The Connection of the session's transaction (looked up once per transaction)."""
    if isinstance(s, Connection):
        return s
    tx = s._transaction
    got = s.info.get(_CONN)
    if got is not None and got[0] is tx:
        return got[1]
    conn = s.connection()
    s.info[_CONN] = (s._transaction, conn)
    return conn
