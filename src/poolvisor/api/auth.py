"""Bearer-token authentication and role checks, as FastAPI dependencies.

Tokens are verified by the services (stored as sha256 digests) on every request, so a revoked or
expired token is refused at once, by every replica sharing the database. Admins see everything; a member
acts inside its own project only, and another project's objects are reported as not found (404),
so a member cannot even learn that they exist. A viewer reads what a member of its project reads
(a global viewer, with no project, what an admin reads) and writes nothing: every write method
(POST, PUT, PATCH, DELETE) is refused with 403 here, in the one dependency every authenticated
route goes through, so a new route is read-only for viewers without doing anything.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from poolvisor.api.errors import ForbiddenError, UnauthorizedError
from poolvisor.domain.errors import NotFoundError
from poolvisor.services import Principal, Services
from poolvisor.services.auth import MAX_TOKEN_LEN  # (one bound: the store refuses longer ones too)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
bearer = HTTPBearer(auto_error=False, description="token from `poolvisor serve` or POST /v1/tokens")


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in the thread pool, a hop per request for a lookup
    svc: Services = request.app.state.services
    return svc


def authenticate(svc: Services, token: str | None) -> Principal:
    """Who a bearer token is (401 when missing, unknown, revoked or expired); the dashboard's
    session cookie holds the same token (ui/session.py)."""
    if not token:
        raise UnauthorizedError("missing bearer token (Authorization: Bearer TOKEN)")
    if len(token) > MAX_TOKEN_LEN:
        raise UnauthorizedError("invalid bearer token")
    return _principal(svc.auth.token_status(token))  # one indexed read per request, no cache


def _principal(got: tuple[Principal | None, str | None]) -> Principal:
    who, invalid = got
    if who is None:
        raise UnauthorizedError("bearer token revoked" if invalid == "revoked" else
                                "bearer token expired" if invalid == "expired" else "invalid bearer token")
    return who


def refuse_viewer_writes(who: Principal) -> Principal:
    """403 for a viewer (read-only) token on a request that changes something."""
    if who.role == "viewer":
        raise ForbiddenError("a viewer token is read-only")
    return who


async def principal(
    request: Request,
    svc: Annotated[Services, Depends(get_services)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    # async. On SQLite the token read runs on the event loop: one indexed SELECT on the token
    # reader's own connection (services/auth.py TokenReader: ~12 us, a WAL read never waits on
    # writers), cheaper than the two thread hops a plain `def` dependency costs. On PostgreSQL it
    # is a round trip that can wait (a busy or unreachable server, a reconnect): in a thread, so
    # that a slow database never stalls every request the event loop serves
    token = creds.credentials if creds is not None else None
    if svc.ctx.store.dialect == "sqlite":
        who = authenticate(svc, token)
    else:
        # an asyncio read (services/auth.py AsyncTokenReader): the task waits, nothing else does;
        # a missing token goes the thread path, which says so
        got = await svc.auth.token_status_async(token) if token else None
        who = _principal(got) if got is not None else await anyio.to_thread.run_sync(authenticate, svc, token)
    return refuse_viewer_writes(who) if request.method in WRITE_METHODS else who


def require_admin(request: Request, who: Principal) -> Principal:
    """An admin; on reads also a global viewer (project None): it reads what an admin reads."""
    if who.role != "admin" and not (who.role == "viewer" and who.project is None
                                    and request.method not in WRITE_METHODS):
        raise ForbiddenError("this operation needs an admin token")
    return who


async def admin(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The dependency of admin routes (async: no I/O, so no thread-pool hop)."""
    return require_admin(request, who)


def scope_project(who: Principal, requested: str | None, *, default: str | None = None) -> str | None:
    """The project a request acts on: a member's (or viewer's) own project; for admins (and global
    viewers), `requested` or `default`.

    A member naming another project is told it does not exist (404), like any invisible object."""
    if who.project is None:
        return requested if requested is not None else default
    if requested is not None and requested != who.project:
        raise NotFoundError(f"project {requested!r} not found")
    return who.project


SvcDep = Annotated[Services, Depends(get_services)]
Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
