"""Responses a route declares because of what it depends on, added to the OpenAPI document from
the routes themselves, so a new route cannot forget them:

- every write (POST, PUT, PATCH, DELETE) behind the bearer token declares 403: a viewer token is
  read-only (api/auth.py), and creations may exceed the project's quota (`quota_exceeded`);
- every route that takes the rate limiter (api/ratelimit.py) declares 429 with `Retry-After`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from poolvisor.api.auth import WRITE_METHODS, principal
from poolvisor.api.errors import DESCRIPTIONS
from poolvisor.api.ratelimit import rate_limiter

ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
RETRY_AFTER = {"Retry-After": {"description": "whole seconds until the project's bucket holds a token",
                               "schema": {"type": "integer", "minimum": 1}}}


def depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    """Whether `call` is among the route's dependencies, at any depth."""
    return any(d.call is call or depends_on(d, call) for d in dependant.dependencies)


@dataclass(frozen=True)
class Operation:
    """One API route as the app serves it: its full path template, methods and dependencies."""

    path: str
    methods: frozenset[str]
    dependant: Dependant
    in_schema: bool


def operations(app: FastAPI) -> Iterator[Operation]:
    """Every APIRoute of the app, including those of included routers (FastAPI >= 0.16x keeps
    them behind `_IncludedRouter` entries, walked by `iter_route_contexts`; older ones list them)."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    if walk is None:
        for r in app.routes:
            if isinstance(r, APIRoute):
                yield Operation(r.path_format, frozenset(r.methods or ()), r.dependant, r.include_in_schema)
        return
    for ctx in walk(app.routes):
        r = ctx.original_route
        if isinstance(r, APIRoute):
            yield Operation(ctx.path_format or r.path_format, frozenset(ctx.methods or r.methods or ()),
                            getattr(ctx, "dependant", r.dependant), bool(getattr(ctx, "include_in_schema",
                                                                                 r.include_in_schema)))


def install(app: FastAPI) -> None:
    """Wrap app.openapi so the generated document carries the responses above."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _amend(app, generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _amend(app: FastAPI, doc: dict[str, Any]) -> None:
    for route in operations(app):
        if not route.in_schema:
            continue
        for method in route.methods:
            op = doc["paths"].get(route.path, {}).get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            if method in WRITE_METHODS and depends_on(route.dependant, principal):
                responses.setdefault("403", {"description": DESCRIPTIONS[403], "content": ERROR_BODY})
            if depends_on(route.dependant, rate_limiter):
                responses.setdefault("429", {"description": DESCRIPTIONS[429], "content": ERROR_BODY,
                                             "headers": RETRY_AFTER})
            op["responses"] = dict(sorted(responses.items()))
