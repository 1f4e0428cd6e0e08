"""One error body for every failure, and the handlers that produce it.

Every error the API returns is `{"error": code, "message": str, "detail": ...}` with the status of
the PoolvisorError class raised (services), of the request validation (422), or of the auth and
limit checks below. Routes declare their possible statuses with `errors(...)` so the OpenAPI
document lists every response a client can receive.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from poolvisor.api.fields import BALANCING_POLICY_PATTERN, BALANCING_POLICY_RULE
from poolvisor.domain.errors import PoolvisorError
from poolvisor.domain.text import NAME_PATTERN, NAME_RULE, TEXT_PATTERN, TEXT_RULE
from poolvisor.observability.logs import current_request_id

log = logging.getLogger("poolvisor.api")


class UnauthorizedError(PoolvisorError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(PoolvisorError):
    status_code = 403
    code = "forbidden"


class PayloadTooLargeError(PoolvisorError):
    status_code = 413
    code = "payload_too_large"


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="machine-readable code, e.g. not_found, conflict, no_valid_host")
    message: str = Field(description="one human-readable line")
    detail: Any = Field(default=None, description="structured detail (placement explanation, field errors)")
    request_id: str | None = Field(default=None, description="the request's id (also in the X-Request-ID "
                                   "header and in every server log line of the request)")


DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing or invalid bearer token",
    403: "The token's role does not allow this (viewer tokens are read-only), or `quota_exceeded`: the "
         "project's quota leaves no room (detail: resource, used, requested, limit)",
    404: "Not found (or not visible to this project)",
    405: "Method not allowed",
    409: "Conflict: duplicate name, object in use, or no valid host",
    413: "Request body over the size limit (64 KiB; 4 MiB for /v1/utilization and /v1/workloads/batch)",
    422: "Invalid input: malformed JSON, schema violation (bad name, wrong JSON type, control character),"
         " unknown resource, bad amount",
    429: "Too many creation requests for this project (`rate_limited`): retry after `Retry-After` seconds",
    503: "A backing component (database, driver) is unavailable",
}

_CODES_BY_STATUS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
    429: "rate_limited", 503: "unavailable",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry declaring these error statuses with the common body."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


def error_response(status: int, code: str, message: str, detail: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": code, "message": message, "detail": jsonable_encoder(detail),
            "request_id": current_request_id()}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status_code=status, headers=headers)


# a pattern mismatch is reported as the rule it states, not as the regular expression
_PATTERN_RULES = {NAME_PATTERN: NAME_RULE, TEXT_PATTERN: TEXT_RULE,
                  BALANCING_POLICY_PATTERN: BALANCING_POLICY_RULE}


def _readable(err: dict[str, Any]) -> dict[str, Any]:
    if err.get("type") == "string_pattern_mismatch":
        rule = _PATTERN_RULES.get(str((err.get("ctx") or {}).get("pattern")))
        if rule is not None:
            return {**err, "msg": rule}
    return err


def _validation_message(errs: list[dict[str, Any]]) -> str:
    if not errs:
        return "invalid request"
    first = errs[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{loc}: {first.get('msg', 'invalid')}{more}"


def _clean(errs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Field errors without the echoed input (it can be large) and without exception objects."""
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errs]


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allow_table(app: Any) -> list[tuple[re.Pattern[str], int, list[str]]]:
    """(path regex, number of literal segments, methods) of every path in the OpenAPI document."""
    table: list[tuple[re.Pattern[str], int, list[str]]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        for template, item in app.openapi()["paths"].items():
            parts = [p for p in template.split("/") if p]
            regex = "".join("/" + ("[^/]+" if p.startswith("{") else re.escape(p)) for p in parts)
            methods = sorted(m.upper() for m in item if m in _HTTP_METHODS)
            table.append((re.compile(regex), sum(not p.startswith("{") for p in parts), methods))
        app.state.allow_table = table
    return table


def allowed_methods(request: Request) -> list[str] | None:
    """The methods of the resource this path names (Starlette's 405 lists only the first route's).

    When several path templates match (`/v1/workloads/batch` also fits `/v1/workloads/{name}`),
    the most specific one, with the most literal segments, is the resource the URL names."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    found = [(literal, methods) for regex, literal, methods in _allow_table(request.app)
             if regex.fullmatch(path)]
    return max(found)[1] if found else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PoolvisorError)
    async def _poolvisor(_: Request, exc: PoolvisorError) -> JSONResponse:
        if exc.status_code >= 500 and exc.status_code != 503:
            log.error("internal error: %s", exc.message)
        retry = getattr(exc, "retry_after", None)  # RateLimitedError: 429 with Retry-After
        return error_response(exc.status_code, exc.code, exc.message, exc.detail,
                              {"Retry-After": str(retry)} if retry is not None else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [_readable(e) for e in exc.errors()]
        return error_response(422, "invalid_input", _validation_message(errs), _clean(errs))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. invalid UTF-8): bad input
            return error_response(422, "invalid_input", f"malformed request body: {exc.detail}")
        code = _CODES_BY_STATUS.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        allowed = allowed_methods(request) if exc.status_code == 405 else None
        if allowed is not None:
            headers["Allow"] = ", ".join(allowed)
        return error_response(exc.status_code, code, str(exc.detail), None, headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal", "internal error; see the server log")
