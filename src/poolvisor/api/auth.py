"""Bearer-token authentication and role checks, as FastAPI dependencies.

Tokens are verified by the services (stored as sha256 digests) on every request, so a revoked or
expired token is refused at once, by every replica sharing the database. Admins see everything; a member
acts inside its own project only, and another project's objects are reported as not found (404),
so a member cannot even learn that they exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from poolvisor.api.errors import ForbiddenError, UnauthorizedError
from poolvisor.domain.errors import NotFoundError
from poolvisor.services import Principal, Services

MAX_TOKEN_LEN = 256
bearer = HTTPBearer(auto_error=False, description="token from `poolvisor serve` or POST /v1/tokens")


def get_services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(
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
    return who


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if who.role != "admin":
        raise ForbiddenError("this operation needs an admin token")
    return who


def scope_project(who: Principal, requested: str | None, *, default: str | None = None) -> str | None:
    """The project a request acts on: a member's own project; for admins, `requested` or `default`.

    A member naming another project is told it does not exist (404), like any invisible object."""
    if who.role == "admin":
        return requested if requested is not None else default
    if requested is not None and requested != who.project:
        raise NotFoundError(f"project {requested!r} not found")
    return who.project


SvcDep = Annotated[Services, Depends(get_services)]
Who = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
