"""Bearer tokens: random secrets shown once, stored as sha256 digests; admin, project member, or
read-only viewer (of one project, or global: every read an admin has, no write).

A token may expire (`expires_at`) and can be revoked (`revoked_at`). Validity is decided by one
indexed lookup per request, never cached in the process, so a revocation or an expiry holds at
once on every process sharing the database; that lookup runs on a reused connection of its own
(TokenReader), the cost of a SELECT and nothing around it. A token never outlives the token that minted it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Engine, Table, bindparam, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from poolvisor.domain.errors import ConflictError, InvalidInputError, NotFoundError
from poolvisor.services.base import ServiceBase, as_utc
from poolvisor.services.records import Principal, Role, TokenRecord
from poolvisor.store.retry import Stale
from poolvisor.store.rows import MetaRow, ProjectRow, TokenRow

BOOTSTRAP_KEY = "admin-bootstrapped"
MAX_TOKEN_LEN = 256
MIN_CHOSEN_TOKEN_LEN = 16  # an operator-chosen admin token (POOLVISOR_TOKEN)
MAX_EXPIRES_IN_S = 10 * 366 * 86400  # ten years
MAX_LABEL_LEN = 63
HINT_LEN = 7  # "pv_" and 4 random characters: enough to tell tokens apart, useless to an attacker
Invalid = Literal["unknown", "revoked", "expired"]
ROLES: tuple[Role, ...] = ("admin", "member", "viewer")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "pv_" + secrets.token_urlsafe(32)


def hint(token: str) -> str:
    return token[:HINT_LEN]


@dataclass(frozen=True)
class IssuedToken:
    """A new token: the secret (shown once) and its record."""

    token: str
    record: TokenRecord


_T, _P = cast(Table, TokenRow.__table__).c, cast(Table, ProjectRow.__table__).c
_TOKEN_STATUS = (select(_T.id, _T.role, _T.revoked_at, _T.expires_at, _P.name.label("project"))
                 .select_from(cast(Table, TokenRow.__table__).outerjoin(
                     cast(Table, ProjectRow.__table__), _P.id == _T.project_id))
                 .where(_T.digest == bindparam("d")))


class TokenReader:
    """The token check's own connections: the one indexed SELECT of `_TOKEN_STATUS` run on a
    reused DBAPI connection, without a Session, a transaction or a pool checkout per request.

    Every call still asks the database (SQLite in autocommit: each SELECT reads the latest
    committed WAL state; PostgreSQL in autocommit: a statement snapshot), so a revocation or an
    expiry committed by any replica holds for the next request. The connections are detached from
    the engine's pool (they count against nothing, are closed when the engine is disposed) and
    shared by the threads that check tokens, one user at a time. None when it does not apply (an
    in-memory SQLite database has one connection, the pool's); any error on a connection drops
    that connection and answers None: the caller then runs the Session path (retries, errors)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        compiled = _TOKEN_STATUS.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.convert = [c.type.dialect_impl(engine.dialect).result_processor(engine.dialect, None)
                        for c in _TOKEN_STATUS.selected_columns]
        self._idle: list[Any] = []
        self.autocommit = engine.dialect.name != "sqlite"  # SQLite's are in autocommit already
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    @staticmethod
    def usable(engine: Engine) -> bool:
        return not isinstance(engine.pool, StaticPool)

    def _connect(self) -> Any:
        fairy = self.engine.raw_connection()
        fairy.detach()  # ours from now on: never handed back to the pool in autocommit mode
        conn: Any = fairy.dbapi_connection
        if self.autocommit:
            conn.autocommit = True
        return conn

    def lookup(self, d: str) -> tuple[bool, tuple[Any, ...] | None]:
        """(answered, the row or None); answered is False when the connection failed."""
        try:
            conn = self._idle.pop()
        except IndexError:
            try:
                conn = self._connect()
            except Exception:  # noqa: BLE001 - the Session path reports it
                return False, None
        try:
            cur = conn.cursor()
            try:
                cur.execute(self.sql, (d,) if self.positional else {"d": d})
                row = cur.fetchone()
            finally:
                cur.close()
        except Exception:  # noqa: BLE001 - a broken connection: dropped, the Session path answers
            with contextlib.suppress(Exception):
                conn.close()
            return False, None
        self._idle.append(conn)
        return True, self.converted(row)

    def converted(self, row: Any) -> tuple[Any, ...] | None:
        """A raw row of the statement as the Session path would give it (None: no such token)."""
        if row is None:
            return None
        return tuple(v if f is None or v is None else f(v) for f, v in zip(self.convert, row, strict=True))

    def close(self) -> None:
        while self._idle:
            with contextlib.suppress(Exception):
                self._idle.pop().close()


class AuthService(ServiceBase):
    """Bearer tokens: bootstrap, adoption, minting, authentication, revocation."""

    _reader: TokenReader | None | bool = False  # False: not made yet
    _async_reader: AsyncTokenReader | None | bool = False

    def bootstrap_admin_token(self) -> str | None:
        """The first admin token, exactly once per database (a unique meta key is the latch)."""
        token = new_token()

        def tx(s: Session) -> str | None:
            if s.get(MetaRow, BOOTSTRAP_KEY) is not None:
                return None
            try:
                with s.begin_nested():  # a savepoint: losing the race must not abort the transaction
                    s.add(MetaRow(key=BOOTSTRAP_KEY, value="1"))
            except IntegrityError:
                return None
            s.add(TokenRow(digest=digest(token), role="admin", project_id=None, label="bootstrap",
                           hint=hint(token)))
            self._event(s, "token.created", "token/admin", "bootstrap admin token created")
            return token

        return self._write(tx)

    def adopt_admin_token(self, token: str) -> None:
        """Make an operator-chosen plaintext `token` (POOLVISOR_TOKEN) an admin token, hashed like
        minted ones (idempotent); too short or odd tokens, member tokens and revoked or expired ones
        are refused (a restart never brings a revoked token back to life)."""
        if not MIN_CHOSEN_TOKEN_LEN <= len(token) <= MAX_TOKEN_LEN or not token.isprintable() or " " in token:
            raise InvalidInputError(
                f"POOLVISOR_TOKEN must be {MIN_CHOSEN_TOKEN_LEN}..{MAX_TOKEN_LEN} printable characters "
                "without spaces")
        d = digest(token)

        def tx(s: Session) -> None:
            row = s.scalars(select(TokenRow).filter_by(digest=d)).first()
            if row is None:
                try:
                    with s.begin_nested():  # a savepoint: another replica may adopt it at once
                        s.add(TokenRow(digest=d, role="admin", project_id=None, label="POOLVISOR_TOKEN",
                                       hint=hint(token)))
                except IntegrityError:
                    raise Stale() from None  # it did (replicas starting together): read it again
            elif row.role != "admin":
                raise InvalidInputError("POOLVISOR_TOKEN is already a member token; choose another")
            elif not _valid(row, datetime.now(UTC)):
                raise InvalidInputError("POOLVISOR_TOKEN was revoked or has expired; choose another")

        self._write(tx)

    def create_token(self, role: Role, project: str | None = None, *, expires_in: float | None = None,
                     label: str = "", creator: Principal | None = None) -> str:
        """A new token (the secret, shown once); see issue_token."""
        return self.issue_token(role, project, expires_in=expires_in, label=label, creator=creator).token

    def issue_token(self, role: Role, project: str | None = None, *, expires_in: float | None = None,
                    label: str = "", creator: Principal | None = None) -> IssuedToken:
        """Mint a token. `expires_in` seconds (None: never, or when `creator` expires, whichever
        is first); a token cannot outlive its creator's, so an expiring token cannot mint a
        lasting one. Authorization (who may mint what) is the caller's business (api/routes)."""
        if role not in ROLES:
            raise InvalidInputError(f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
        if role == "member" and project is None:
            raise InvalidInputError("a member token needs a project")
        if role == "admin" and project is not None:
            raise InvalidInputError("an admin token is not bound to a project")
        if not isinstance(label, str) or len(label) > MAX_LABEL_LEN or not label.isprintable():
            raise InvalidInputError(f"a token label is at most {MAX_LABEL_LEN} printable characters")
        now = datetime.now(UTC)
        expires_at = None
        if expires_in is not None:
            if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) \
                    or not math.isfinite(expires_in) or not 1 <= expires_in <= MAX_EXPIRES_IN_S:
                raise InvalidInputError(f"expires_in must be 1..{MAX_EXPIRES_IN_S} seconds")
            expires_at = now + timedelta(seconds=float(expires_in))
        if creator is not None and creator.expires_at is not None:
            if expires_at is None:
                expires_at = creator.expires_at
            elif expires_at > creator.expires_at:
                raise InvalidInputError(
                    f"a token cannot outlive the token creating it (that one expires "
                    f"{creator.expires_at.isoformat(timespec='seconds')})")
        token = new_token()

        def tx(s: Session) -> IssuedToken:
            pid = self._project(s, project).id if project is not None else None
            row = TokenRow(digest=digest(token), role=role, project_id=pid, label=label, hint=hint(token),
                           created_by=creator.token_id if creator is not None else None,
                           expires_at=expires_at, created_at=now)
            s.add(row)
            s.flush()
            until = f", expires {expires_at.isoformat(timespec='seconds')}" if expires_at else ""
            self._event(s, "token.created", f"token/{row.id}", f"{role} token {row.id} created{until}",
                        project=project, data={"id": row.id, "role": role, "label": label})
            return IssuedToken(token, _record(row, project, now))

        return self._write(tx)

    def token_status(self, token: str) -> tuple[Principal | None, Invalid | None]:
        """Who this token is, or why it is not valid (unknown, revoked, expired): one indexed read."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LEN:
            return None, "unknown"
        d = digest(token)
        reader = self._token_reader()
        if reader is not None:
            answered, found = reader.lookup(d)
            if answered:
                return _status(found)

        def tx(s: Session) -> tuple[Principal | None, Invalid | None]:
            # one prepared Core statement (token and project name), no ORM objects; answers from
            # the database each time (no cache)
            row = s.connection().execute(_TOKEN_STATUS, {"d": d}).first()
            return _status(tuple(row) if row is not None else None)

        return self._read(tx)

    async def token_status_async(self, token: str) -> tuple[Principal | None, Invalid | None] | None:
        """token_status() on the event loop, PostgreSQL only: the same indexed read, sent on an
        asyncio connection of its own (AsyncTokenReader), so the request's task waits for the
        database without a thread hop. None when it could not answer (SQLite, no connection, an
        error): the caller then runs token_status in a thread."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LEN:
            return None, "unknown"
        areader = self._async_reader
        if areader is False:
            reader = self._token_reader()
            areader = self._async_reader = AsyncTokenReader(reader) \
                if reader is not None and self.ctx.store.dialect == "postgresql" else None
        if areader is None:
            return None
        answered, found = await areader.lookup(digest(token))  # type: ignore[union-attr]
        return _status(found) if answered else None

    def _token_reader(self) -> TokenReader | None:
        """This store's TokenReader (made on first use), None where it does not apply."""
        reader = self._reader
        if reader is False:
            engine = self.ctx.store.engine
            reader = self._reader = TokenReader(engine) if TokenReader.usable(engine) else None
        return reader if isinstance(reader, TokenReader) else None

    def authenticate(self, token: str) -> Principal | None:
        return self.token_status(token)[0]

    def list_tokens(self, project: str | None = None) -> list[TokenRecord]:
        """Every token (project None, for admins) or the tokens of one project, oldest first."""

        def tx(s: Session) -> list[TokenRecord]:
            q = select(TokenRow, ProjectRow.name).outerjoin(ProjectRow, ProjectRow.id == TokenRow.project_id)
            if project is not None:
                q = q.where(TokenRow.project_id == self._project(s, project).id)
            now = datetime.now(UTC)
            return [_record(row, pname, now) for row, pname in s.execute(q.order_by(TokenRow.id))]

        return self._read(tx)

    def revoke_token(self, token_id: int, project: str | None = None) -> TokenRecord:
        """Revoke a token (idempotent). With `project`, only that project's tokens are visible
        (members); the last valid admin token cannot be revoked (mint another first)."""
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 1:
            raise InvalidInputError("a token id is a positive integer")

        def tx(s: Session) -> TokenRecord:
            row = s.get(TokenRow, token_id)
            p = s.get(ProjectRow, row.project_id) if row is not None and row.project_id is not None else None
            pname = p.name if p is not None else None
            if row is None or (project is not None and pname != project):
                raise NotFoundError(f"token {token_id} not found")
            now = datetime.now(UTC)
            if row.revoked_at is None:
                if row.role == "admin" and _valid(row, now):
                    # lock the admin rows (PostgreSQL; SQLite writers are serialized anyway) so two
                    # concurrent revocations cannot each leave the other as the "last" one
                    s.execute(select(TokenRow.id).where(TokenRow.role == "admin").with_for_update())
                    others = s.scalar(select(func.count()).select_from(TokenRow).where(
                        TokenRow.role == "admin", TokenRow.id != row.id, TokenRow.revoked_at.is_(None),
                        TokenRow.expires_at.is_(None) | (TokenRow.expires_at > now)))
                    if not others:
                        raise ConflictError(f"token {token_id} is the last valid admin token; create "
                                            "another admin token first (or use `poolvisor token "
                                            "rotate-admin`)")
                row.revoked_at = now
                self._event(s, "token.revoked", f"token/{row.id}", f"{row.role} token {row.id} revoked",
                            project=pname, data={"id": row.id})
            return _record(row, pname, now)

        return self._write(tx)


class AsyncTokenReader:
    """PostgreSQL: TokenReader's statement on asyncio connections (psycopg's AsyncConnection, in
    autocommit: a statement snapshot, so a revocation committed by any replica holds for the next
    request, as before). A request's task sends the read and awaits its answer on the event loop:
    neither the loop nor any thread waits for the database, and no thread is woken per request.
    At most MAX_CONNECTIONS connections, reused one read at a time (more reads at once queue for
    one, never open more: 200 clients must not take 200 of the server's connections); any error
    drops the connection and answers "not answered" (the caller runs the thread path, with its
    retries and errors). Connections
    belong to the event loop that opened them (a `serve` worker's own)."""

    MAX_CONNECTIONS = 4  # per event loop: a read takes ~0.1 ms, so four serve thousands a second
    TIMEOUT_S = 5.0  # a read (or its wait for a connection) longer than this goes the thread path

    def __init__(self, reader: TokenReader) -> None:
        self.reader = reader
        engine = reader.engine
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self.conninfo: str = args[0] if args else ""
        self.kwargs = {"connect_timeout": 5} | dict(kwargs)
        self._idle: list[Any] = []
        self._loop: Any = None
        self._slots: Any = None  # asyncio.Semaphore of the loop
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def close(self) -> None:
        """Close the idle connections (libpq's finish: no await needed, nothing is in flight)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn._closed = True
                conn.pgconn.finish()

    async def lookup(self, d: str) -> tuple[bool, tuple[Any, ...] | None]:
        import asyncio

        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # (connections of another loop are not this one's)
            self.close()
            self._loop, self._slots = loop, asyncio.Semaphore(self.MAX_CONNECTIONS)
        try:
            async with asyncio.timeout(self.TIMEOUT_S):  # (a database that stopped answering)
                async with self._slots:  # at most MAX_CONNECTIONS reads at once; the others queue
                    return await self._lookup(d)
        except TimeoutError:  # the thread path then waits (or fails) as before, without a slot
            return False, None

    async def _lookup(self, d: str) -> tuple[bool, tuple[Any, ...] | None]:
        import psycopg

        try:
            conn = self._idle.pop()
        except IndexError:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, **self.kwargs)
            except Exception:  # noqa: BLE001 - the thread path reports it
                return False, None
        r = self.reader
        try:
            cur = await conn.execute(r.sql, (d,) if r.positional else {"d": d})
            row = await cur.fetchone()
        except BaseException:  # an error or a cancelled request: the connection may be mid-query
            with contextlib.suppress(Exception):
                await conn.close()
            if not isinstance(sys.exc_info()[1], Exception):
                raise
            return False, None
        self._idle.append(conn)
        return True, r.converted(row)


def _status(row: tuple[Any, ...] | None) -> tuple[Principal | None, Invalid | None]:
    """Who a `_TOKEN_STATUS` row (id, role, revoked_at, expires_at, project) is, or why not valid."""
    if row is None or row[1] not in ROLES:
        return None, "unknown"
    tid, role_s, revoked_at, expires_at, project = row
    if revoked_at is not None:
        return None, "revoked"
    expires = as_utc(expires_at) if expires_at is not None else None
    if expires is not None and expires <= datetime.now(UTC):
        return None, "expired"
    role: Role = "admin" if role_s == "admin" else "viewer" if role_s == "viewer" else "member"
    return Principal(tid, project, role, expires), None


def _valid(row: TokenRow, now: datetime) -> bool:
    return row.revoked_at is None and (row.expires_at is None or as_utc(row.expires_at) > now)


def _record(row: TokenRow, project: str | None, now: datetime) -> TokenRecord:
    state = "revoked" if row.revoked_at is not None else "active" if _valid(row, now) else "expired"
    return TokenRecord(
        id=row.id, role=row.role, project=project, label=row.label, hint=row.hint,
        created_at=as_utc(row.created_at), created_by=row.created_by,
        expires_at=as_utc(row.expires_at) if row.expires_at is not None else None,
        revoked_at=as_utc(row.revoked_at) if row.revoked_at is not None else None, state=state)
