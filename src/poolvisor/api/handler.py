"""The request handler of an API route, with FastAPI's per-request decisions taken once per route.

FastAPI's handler (`fastapi.routing.get_request_handler`) answers each request by walking the
route's dependency tree and, at every node, asking again what never changes: is this dependency
a generator, a coroutine, a security scheme; what is its cache key; which of the path, query,
header and cookie parameters exist (it parses the query string, the headers and the cookies even
when the route declares none). On a small route that walk was about half of the request's
server CPU. And a plain `def` route costs two thread-pool hops: one for the handler, one more for
the response model's validation.

`compile_handler` makes, once per route, a plan of the same walk (`_Node`: the dependency tree
with each node's call, kind and cache key decided) and a handler that follows it:
- the same order, so the same first error wins (an authentication failure before a bad query),
  the same dependency cache (a dependency used twice runs once), the same 422 bodies (validation
  goes through FastAPI's own `request_params_to_args` / `request_body_to_args` and the route's
  model fields), the same JSON body rules (`strict_content_type`);
- a sync route's handler, its response validation and its serialization in one thread hop;
- the response as FastAPI builds it: the declared model validated (an instance of it passes as
  is) and dumped to JSON by pydantic, status and headers from the `Response` parameter;
- no per-request exit stacks (FastAPI opens two, for generator dependencies).

Routes that use what the plan does not cover (generator dependencies, background tasks, security
scopes, forms, streams, a custom response class, a body size limit) keep FastAPI's handler, and so
does any request while the app has `dependency_overrides` (tests): `compile_handler` returns None,
or the route's app defers to FastAPI's. If FastAPI's internals it uses are missing (another
version), nothing is compiled.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

try:
    from fastapi import params
    from fastapi._compat import ModelField, Undefined, field_annotation_is_sequence
    from fastapi.datastructures import DefaultPlaceholder
    from fastapi.dependencies.models import (
        Dependant,
        _get_cache_key,
        _is_async_gen_callable,
        _is_coroutine_callable,
        _is_gen_callable,
    )
    from fastapi.dependencies.utils import (
        _get_param_aliases,
        _get_param_model,
        _is_json_field,
        _validate_value_with_model_field,
        request_body_to_args,
        request_params_to_args,
    )
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError, ResponseValidationError
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute, _extract_endpoint_context, request_response
    from fastapi.utils import is_body_allowed_for_status_code
    AVAILABLE = True
except ImportError:  # pragma: no cover - another FastAPI: its own handlers stay
    AVAILABLE = False

Handler = Callable[[Request], Awaitable[Response]]
_CONTENT_TYPES: dict[str, bool] = {}  # Content-Type header -> is JSON (FastAPI's rule, parsed once)
_MAX_CONTENT_TYPES = 256


_IMMUTABLE = (type(None), bool, int, float, str, bytes)


@dataclass(frozen=True, slots=True)
class _Param:
    """One path, query, header or cookie parameter, read as FastAPI's `request_params_to_args`
    reads it, with what it asks of the field per request decided once."""

    field: Any
    name: str
    aliases: tuple[str, ...]  # the request keys, in FastAPI's order of preference
    multi: bool  # a sequence: every value of a repeated key
    sequence: bool
    where: str  # path, query, header, cookie (the error's loc)
    default: Any  # Undefined: validate (or report missing) when absent

    @classmethod
    def of(cls, field: Any) -> _Param:
        seq = field_annotation_is_sequence(field.field_info.annotation)
        info = field.field_info
        cheap = (not info.is_required() and not info.validate_default and info.default_factory is None
                 and isinstance(info.default, _IMMUTABLE))
        return cls(field, field.name, tuple(a for _, a in _get_param_aliases(field)),
                   multi=seq and not _is_json_field(field), sequence=seq, where=info.in_.value,
                   default=info.default if cheap else Undefined)


def _params(fields: list[Any]) -> tuple[_Param, ...] | None:
    """The fields' read plan, None when one is a model of parameters (FastAPI reads those)."""
    if any(_get_param_model(f) is not None for f in fields):
        return None
    return tuple(_Param.of(f) for f in fields)


def _read_params(plan: tuple[_Param, ...], source: Any) -> tuple[dict[str, Any], list[Any]]:
    """FastAPI's request_params_to_args for plain parameters: (values, errors)."""
    values: dict[str, Any] = {}
    errors: list[Any] = []
    multidict = isinstance(source, (ImmutableMultiDict, Headers))
    for p in plan:
        alias = next((a for a in p.aliases if a in source), p.aliases[0])
        value = source.getlist(alias) if p.multi and multidict else source.get(alias, None)
        if value is None or (p.sequence and len(value) == 0):
            if p.default is not Undefined:
                values[p.name] = p.default
                continue
            value = Undefined
        v, errs = _validate_value_with_model_field(field=p.field, value=value, values=values,
                                                   loc=(p.where, alias))
        if errs:
            errors.extend(errs)
        else:
            values[p.name] = v
    return values, errors


@dataclass(frozen=True, slots=True)
class _Node:
    """One dependant (the route's endpoint or one of its dependencies), decided once."""

    call: Callable[..., Any]
    name: str | None
    is_coroutine: bool
    use_cache: bool
    cache_key: Any
    subs: tuple[_Node, ...]
    sources: tuple[tuple[str, list[Any], tuple[_Param, ...] | None], ...]  # (request attribute, fields, plan)
    body_params: list[Any]
    request_param_names: tuple[str, ...]
    response_param_name: str | None


def _plannable(d: Dependant) -> bool:
    """A dependant whose solving the plan reproduces exactly."""
    return (d.call is not None and not _is_gen_callable(d.call) and not _is_async_gen_callable(d.call)
            and d.background_tasks_param_name is None and d.security_scopes_param_name is None
            and d.websocket_param_name is None and not d.own_oauth_scopes and d.concurrency is None
            and all(_plannable(s) for s in d.dependencies))


def _node(d: Dependant, cache_key: Any = None) -> _Node:
    assert d.call is not None
    subs = tuple(_node(s, _get_cache_key(dependant=s)) for s in d.dependencies)
    sources = tuple((source, fields, _params(fields)) for source, fields in (
        ("path_params", d.path_params), ("query_params", d.query_params), ("headers", d.header_params),
        ("cookies", d.cookie_params)) if fields)  # (FastAPI parses all four, declared or not)
    return _Node(call=d.call, name=d.name, is_coroutine=_is_coroutine_callable(d.call),
                 use_cache=d.use_cache, cache_key=cache_key, subs=subs, sources=sources,
                 body_params=d.body_params,
                 request_param_names=tuple(n for n in (d.http_connection_param_name, d.request_param_name)
                                           if n),
                 response_param_name=d.response_param_name)


async def _solve(node: _Node, request: Request, body: Any, response: Response, cache: dict[Any, Any],
                 embed: bool) -> tuple[dict[str, Any], list[Any]]:
    """FastAPI's solve_dependencies for this node: (values, errors)."""
    values: dict[str, Any] = {}
    errors: list[Any] = []
    for sub in node.subs:
        sub_values, sub_errors = await _solve(sub, request, body, response, cache, embed)
        if sub_errors:
            errors.extend(sub_errors)
            continue
        if sub.use_cache and sub.cache_key in cache:
            solved = cache[sub.cache_key]
        elif sub.is_coroutine:
            solved = await sub.call(**sub_values)
        else:
            solved = await run_in_threadpool(sub.call, **sub_values)
        if sub.name is not None:
            values[sub.name] = solved
        if sub.cache_key not in cache:
            cache[sub.cache_key] = solved
    for source, fields, plan in node.sources:
        got, errs = (_read_params(plan, getattr(request, source)) if plan is not None
                     else request_params_to_args(fields, getattr(request, source)))
        values.update(got)
        errors += errs
    if node.body_params:
        got, errs = await request_body_to_args(body_fields=node.body_params, received_body=body,
                                               embed_body_fields=embed)
        values.update(got)
        errors.extend(errs)
    for name in node.request_param_names:
        values[name] = request
    if node.response_param_name:
        values[node.response_param_name] = response
    return values, errors


def _sub_response() -> Response:
    """The `Response` a route may take as a parameter to set the status and headers (FastAPI's)."""
    response = Response(status_code=204)  # no body, so no content-length header to delete (FastAPI's way)
    response.status_code = None  # type: ignore[assignment]
    return response


def _is_json(content_type: str) -> bool:
    """FastAPI's test of a body's Content-Type (application/json or application/*+json)."""
    known = _CONTENT_TYPES.get(content_type)
    if known is None:
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        known = message.get_content_maintype() == "application" and (subtype == "json"
                                                                       or subtype.endswith("+json"))
        if len(_CONTENT_TYPES) < _MAX_CONTENT_TYPES:
            _CONTENT_TYPES[content_type] = known
    return known


def _endpoint_ctx(route: APIRoute, request: Request) -> Any:
    """What FastAPI puts in a validation error (only built for one)."""
    ctx = dict(_extract_endpoint_context(route.dependant.call))
    mount_path = request.scope.get("root_path", "").rstrip("/")
    ctx["path"] = f"{request.method} {mount_path}{route.dependant.path}"
    return ctx


def compile_handler(route: APIRoute) -> Handler | None:
    """The planned handler of `route`, or None when it uses something the plan does not cover."""
    if not AVAILABLE or type(route) is not APIRoute:
        return None
    dependant = route.dependant
    if (route.is_sse_stream or route.is_json_stream or getattr(route, "max_body_size", None) is not None
            or not isinstance(route.response_class, DefaultPlaceholder)
            or route.response_class.value is not JSONResponse
            or getattr(route, "stream_item_field", None) is not None
            or (route.body_field is not None and isinstance(route.body_field.field_info, params.Form))
            or not _plannable(dependant)):
        return None
    plan = _node(dependant)
    body_field = route.body_field
    strict = route.strict_content_type
    strict_ct = strict.value if isinstance(strict, DefaultPlaceholder) else strict
    embed = route._embed_body_fields
    field: ModelField | None = route.response_field
    status_code = route.status_code
    dump: dict[str, Any] = {
        "include": route.response_model_include, "exclude": route.response_model_exclude,
        "by_alias": route.response_model_by_alias, "exclude_unset": route.response_model_exclude_unset,
        "exclude_defaults": route.response_model_exclude_defaults,
        "exclude_none": route.response_model_exclude_none}

    def serialize(raw: Any, request: Request) -> Any:
        """The handler's return value as FastAPI answers it: a Response as is, else the response
        model's JSON (bytes) or, without a model, the jsonable value."""
        if isinstance(raw, Response) or field is None:
            return raw if isinstance(raw, Response) else jsonable_encoder(raw)
        value, errs = field.validate(raw, {}, loc=("response",))
        if errs:
            raise ResponseValidationError(errors=errs, body=raw, endpoint_ctx=_endpoint_ctx(route, request))
        return field.serialize_json(value, **dump)

    def run_sync(values: dict[str, Any], request: Request) -> Any:
        return serialize(plan.call(**values), request)

    async def read_body(request: Request) -> Any:
        try:
            body_bytes = await request.body()
            if not body_bytes:
                return Undefined
            content_type = request.headers.get("content-type")
            if not content_type:
                return await request.json() if not strict_ct else body_bytes
            return await request.json() if _is_json(content_type) else body_bytes
        except json.JSONDecodeError as e:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body", e.pos), "msg": "JSON decode error",
                  "input": {}, "ctx": {"error": e.msg}}],
                body=e.doc, endpoint_ctx=_endpoint_ctx(route, request)) from e
        except HTTPException:
            raise
        except Exception as e:
            raise HTTPException(status_code=400, detail="There was an error parsing the body") from e

    async def handler(request: Request) -> Response:
        body = await read_body(request) if body_field is not None else Undefined
        sub_response = _sub_response()
        values, errors = await _solve(plan, request, body, sub_response, {}, embed)
        if errors:
            raise RequestValidationError(errors, body=None if body is Undefined else body,
                                         endpoint_ctx=_endpoint_ctx(route, request))
        if plan.is_coroutine:
            content = serialize(await plan.call(**values), request)
        else:  # the handler, the response validation and the serialization: one thread hop
            content = await run_in_threadpool(run_sync, values, request)
        if isinstance(content, Response):
            return content
        code = sub_response.status_code or status_code
        args: dict[str, Any] = {"background": None}
        if code is not None:
            args["status_code"] = code
        response = (Response(content=content, media_type="application/json", **args) if field is not None
                    else JSONResponse(content, **args))
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        response.headers.raw.extend(sub_response.headers.raw)
        return response

    return handler


def _asgi(handler: Handler, fastapi_app: ASGIApp, overrides: Any) -> ASGIApp:
    """FastAPI's `request_response` around a planned handler, without the two exit stacks it
    opens per request for generator dependencies (a planned route has none). FastAPI's own app
    answers while the app has dependency overrides (tests)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if overrides is not None and getattr(overrides, "dependency_overrides", None):
            await fastapi_app(scope, receive, send)
            return
        request = Request(scope, receive, send)

        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(request)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(respond, request)(scope, receive, send)

    return app


def install(route: Any) -> bool:
    """Give an API route the planned handler (once); False when it keeps FastAPI's."""
    done = getattr(route, "_poolvisor_planned", None)
    if not AVAILABLE or not isinstance(route, APIRoute) or done is not None:
        return bool(done)
    handler = compile_handler(route)
    route._poolvisor_planned = handler is not None  # type: ignore[attr-defined]
    if handler is not None:
        # (FastAPI's app of the route as it is now: its overrides provider may have been set since)
        route.app = _asgi(handler, request_response(route.get_route_handler()),
                          route.dependency_overrides_provider)
    return handler is not None
