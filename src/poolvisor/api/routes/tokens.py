"""Tokens: mint, list and revoke; admins any token, members the tokens of their own project.

A member may mint member and viewer tokens for its project only; a viewer mints nothing (every write
is refused to viewers, api/auth.py); no token outlives the token that minted it.
The last valid admin token cannot be revoked (409): mint another first (`token rotate-admin`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from poolvisor.api.auth import SvcDep, Who, scope_project
from poolvisor.api.errors import ForbiddenError, errors
from poolvisor.api.schemas import Name, TokenCreate, TokenInfo, TokenOut, WhoAmI

router = APIRouter(prefix="/v1", tags=["tokens"])
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="token id (see GET /v1/tokens)")]


@router.post("/tokens", status_code=201, response_model=TokenOut,
             responses=errors(401, 403, 404, 413, 422, 503))
def create_token(body: TokenCreate, svc: SvcDep, who: Who) -> TokenOut:
    """Mint a token, returned once. Members: member and viewer tokens of their own project only;
    viewers: none (read-only). An admin's viewer token without `project` is a global viewer."""
    if who.role != "admin" and body.role == "admin":
        raise ForbiddenError("only an admin token can mint admin tokens")
    project = body.project if body.role == "admin" else scope_project(who, body.project)
    if project is not None:
        svc.catalog.get_project(project)  # 404 before minting anything
    new = svc.auth.issue_token(body.role, project, expires_in=body.expires_in, label=body.label, creator=who)
    r = new.record
    return TokenOut(token=new.token, id=r.id, role=r.role, project=r.project, label=r.label,
                    expires_at=r.expires_at)


@router.get("/tokens", response_model=list[TokenInfo], responses=errors(401, 404, 422, 503))
def list_tokens(svc: SvcDep, who: Who,
                project: Annotated[Name | None, Query(description="only this project's tokens")] = None
                ) -> list[TokenInfo]:
    """Every token (admins; `project` narrows) or the caller's project's tokens (members)."""
    return [TokenInfo.model_validate(t) for t in svc.auth.list_tokens(scope_project(who, project))]


@router.delete("/tokens/{token_id}", status_code=204, responses=errors(401, 404, 409, 422, 503))
def revoke_token(token_id: TokenId, svc: SvcDep, who: Who) -> None:
    """Revoke a token at once, everywhere (idempotent). Members: their project's tokens only."""
    svc.auth.revoke_token(token_id, scope_project(who, None))


@router.get("/whoami", response_model=WhoAmI, responses=errors(401, 503))
async def whoami(who: Who) -> WhoAmI:
    # async: the token check is the (async) dependency's; this only builds the body, no thread hop
    return WhoAmI(role=who.role, project=who.project, token_id=who.token_id, expires_at=who.expires_at)
