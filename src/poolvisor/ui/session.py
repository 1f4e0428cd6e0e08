"""Dashboard sessions: the API token in an HttpOnly SameSite=Strict cookie, CSRF checks, form bodies.

The cookie holds the bearer token itself, so every page is authenticated exactly as an API call is:
`api.auth.authenticate` verifies it against the store on each request (a revoked token logs the
browser out at once, on every replica). There is no second authorization rule: pages call the
API's route functions, or its `admin`/`scope_project` checks, with that principal.

CSRF: SameSite=Strict already keeps the cookie off cross-site requests; on top of that every POST
must carry a form field derived from the session token (sha256, so it reveals nothing about the
token and needs no server-side state, which keeps replicas interchangeable) and, when the browser
sends one, an Origin equal to the server's own.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import Depends, Request

from poolvisor.api.auth import MAX_TOKEN_LEN, authenticate, get_services, refuse_viewer_writes
from poolvisor.api.errors import ForbiddenError, UnauthorizedError
from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.services import Principal, Services

COOKIE = "pv_session"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf"
MAX_FORM_FIELDS = 64
FORM_TYPE = "application/x-www-form-urlencoded"


class LoginRequired(PoolvisorError):
    """No valid session: the page answers with the login form (a redirect for a browser)."""

    status_code = 401
    code = "unauthorized"


class UnsupportedMediaError(PoolvisorError):
    status_code = 415
    code = "unsupported_media_type"


def csrf_token(token: str) -> str:
    """The CSRF form value of a session: derived from its token, useless without it."""
    return hashlib.sha256(b"poolvisor-ui-csrf\0" + token.encode()).hexdigest()


def session_token(request: Request) -> str | None:
    tok = request.cookies.get(COOKIE)
    return tok if tok else None


def resolve(svc: Services, token: str | None) -> Principal:
    """The principal of a session token, by the API's own check (LoginRequired when invalid)."""
    if not token or len(token) > MAX_TOKEN_LEN:
        raise LoginRequired("log in with a token")
    try:
        return authenticate(svc, token)
    except UnauthorizedError as e:
        raise LoginRequired(e.message) from None


def ui_principal(request: Request, svc: Annotated[Services, Depends(get_services)]) -> Principal:
    """FastAPI dependency: who the browser is logged in as."""
    return resolve(svc, session_token(request))


def check_origin(request: Request) -> None:
    """A POST whose Origin (or, without one, Referer) names another site is refused."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        if origin == "null":
            raise ForbiddenError("cross-site form posts are refused")
        return
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    if parts.netloc != host:
        raise ForbiddenError("cross-site form posts are refused")


async def form_fields(request: Request) -> dict[str, str]:
    """FastAPI dependency: the urlencoded form body (one value per field; the last one wins)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM_TYPE:
        raise UnsupportedMediaError(f"send the form as {FORM_TYPE}")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInputError("malformed form body") from None
    return dict(pairs)


Form = Annotated[dict[str, str], Depends(form_fields)]


def checked_post(request: Request, fields: Form,
                 who: Annotated[Principal, Depends(ui_principal)]) -> Principal:
    """FastAPI dependency for a logged-in POST: same-origin and the session's CSRF value."""
    check_origin(request)
    token = session_token(request) or ""
    if not hmac.compare_digest(fields.get(CSRF_FIELD, ""), csrf_token(token)):
        raise ForbiddenError("the form's CSRF token is missing or stale; reload the page")
    return who


def checked_write(who: Annotated[Principal, Depends(checked_post)]) -> Principal:
    """A logged-in POST that changes something: not for viewers (read-only), as in the API."""
    return refuse_viewer_writes(who)


UiWho = Annotated[Principal, Depends(ui_principal)]
PostWho = Annotated[Principal, Depends(checked_post)]  # log out: any session
WriteWho = Annotated[Principal, Depends(checked_write)]
