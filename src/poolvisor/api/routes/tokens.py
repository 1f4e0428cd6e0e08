"""Tokens: admins mint admin or project-member tokens; anyone can ask who they are."""

from __future__ import annotations

from fastapi import APIRouter

from poolvisor.api.auth import Admin, SvcDep, Who
from poolvisor.api.errors import errors
from poolvisor.api.schemas import TokenCreate, TokenOut, WhoAmI
from poolvisor.domain.errors import InvalidInputError

router = APIRouter(prefix="/v1", tags=["tokens"])


@router.post("/tokens", status_code=201, response_model=TokenOut,
             responses=errors(401, 403, 404, 413, 422, 503))
def create_token(body: TokenCreate, svc: SvcDep, _: Admin) -> TokenOut:
    if body.role == "member" and body.project is None:
        raise InvalidInputError("a member token needs a project")
    if body.role == "admin" and body.project is not None:
        raise InvalidInputError("an admin token belongs to no project")
    if body.project is not None:
        svc.get_project(body.project)  # 404 before minting anything
    return TokenOut(token=svc.create_token(body.role, body.project), role=body.role, project=body.project)


@router.get("/whoami", response_model=WhoAmI, responses=errors(401, 503))
def whoami(who: Who) -> WhoAmI:
    return WhoAmI(role=who.role, project=who.project)
