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

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from poolvisor.api.errors import ForbiddenError, UnauthorizedError
from poolvisor.domain.errors import NotFoundError
from poolvisor.services import Principal, Services

MAX_TOKEN_LEN = 256
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
bearer = HTTPBearer(auto_error=False, description="token from `poolvisor serve` or POST /v1/tokens")


def get_services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(
    request: Request,
    svc: Annotated[Services, Depends(get_services)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if creds is None or not creds.credentials:
        raise UnauthorizedError("missing bearer token (Authorization: Bearer TOKEN)")
    if len(creds.credentials) > MAX_TOKEN_LEN:
        raise UnauthorizedError("invalid bearer token")
    who, invalid = svc.auth.token_status(creds.credentials)  # one indexed read per request, no cache
    if who is None:
        raise UnauthorizedError("bearer token revoked" if invalid == "revoked" else
                                "bearer token expired" if invalid == "expired" else "invalid bearer token")
    if who.role == "viewer" and request.method in WRITE_METHODS:
        raise ForbiddenError("a viewer token is read-only")
    return who


def admin(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
    """An admin; on reads also a global viewer (project None): it reads what an admin reads."""
    if who.role != "admin" and not (who.role == "viewer" and who.project is None
                                    and request.method not in WRITE_METHODS):
        raise ForbiddenError("this operation needs an admin token")
    return who


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
