"""Rendering: the Jinja2 environment, the page helper, and HTML error pages for the dashboard routes.

Dashboard routes raise the same errors as the API (services' PoolvisorError, the API's 401/403);
`HtmlErrorRoute` turns them into an HTML page with the same status (a missing session becomes a
redirect to the login form), so the JSON error handlers of /v1 stay untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from poolvisor import __version__
from poolvisor.api.errors import _readable, _validation_message
from poolvisor.domain.errors import PoolvisorError
from poolvisor.services import Principal
from poolvisor.ui.session import CSRF_FIELD, LoginRequired, csrf_token, resolve, session_token

TEMPLATES = Path(__file__).parent / "templates"
MAX_ROWS = 500  # rows of a long list shown on one page
#: scripts only from /ui/static; inline style attributes (heat map colours) are allowed
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _num(v: Any, digits: int = 3) -> str:
    """A number for a table cell: integers plain, others with `digits` significant digits."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100.0 * v:.0f}%"


def _when(t: datetime | str | None) -> str:
    """A time for a cell, UTC as stored (task log entries carry ISO strings)."""
    if isinstance(t, str):
        try:
            return datetime.fromisoformat(t).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return t
    return "–" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(num=_num, pct=_pct, when=_when, q=lambda s: quote(str(s), safe=""))
env.globals.update(version=__version__, csrf_field=CSRF_FIELD, max_rows=MAX_ROWS)


def page(request: Request, template: str, who: Principal | None, *, status: int = 200,
         **context: Any) -> HTMLResponse:
    """Render `template` with the session (principal, CSRF value) and `context`."""
    token = session_token(request)
    html = env.get_template(template).render(
        request=request, who=who, csrf=csrf_token(token) if (token and who) else "", **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def error_page(request: Request, status: int, message: str, who: Principal | None = None) -> HTMLResponse:
    return page(request, "error.html", who, status=status, status_code=status, message=message)


def login_redirect(request: Request) -> Response:
    if request.method == "GET" and "hx-request" not in request.headers:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303,
                                headers=SECURITY_HEADERS)
    resp = error_page(request, 401, "your session has ended: log in again")
    resp.headers["HX-Redirect"] = "/ui/login"
    return resp


def _who(request: Request) -> Principal | None:
    """The session's principal for an error page's navigation (None when there is none)."""
    try:
        return resolve(request.app.state.services, session_token(request))
    except PoolvisorError:
        return None


class HtmlErrorRoute(APIRoute):
    """An APIRoute whose errors render as HTML pages (status kept) instead of the API's JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except PoolvisorError as e:
                status = e.status_code if 400 <= e.status_code < 500 else 503
                return error_page(request, status, e.message, _who(request))
            except RequestValidationError as e:  # worded as the API words it (names: the rule)
                return error_page(request, 422, _validation_message([_readable(x) for x in e.errors()]),
                                  _who(request))

        return run
