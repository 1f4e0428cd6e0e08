"""No control or bidirectional formatting character gets into free text; every request string is
constrained; 405 answers list the path's methods; 413 is declared wherever it can happen.

Free-text fields are found in the OpenAPI document (request-body strings carrying the text rule),
so a new one is covered without touching this file; every other request string must be a name,
an enum or a date-time: no string is unconstrained.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, cast

import pytest

from poolvisor.api.app import create_app
from poolvisor.api.limits import BULK_MAX_BODY, DEFAULT_MAX_BODY
from poolvisor.domain.errors import InvalidInputError
from poolvisor.domain.text import TEXT_PATTERN, check_text, forbidden_char
from poolvisor.services import Services

DOC = create_app(cast(Services, None)).openapi()

FORBIDDEN = ["\x00", "\x1b[2J", "\x07", "\t", "\n", "\r", "\x7f", "\x85", "\x9b", "\u061c", "\u200e",
             "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
             "\u2069"]
ALLOWED = ["plain", "Zürich", "東京 ラック", "emoji \U0001f680", "quotes \"'`", "a\u00a0b", "\u200d"]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _strings(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every string schema inside `schema` (object properties, map keys and values, list items)."""
    schema = _resolve(schema)
    if "properties" not in schema:  # an object's oneOf/anyOf state rules over its own properties
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in schema.get(key, []):
                yield from _strings(sub, where)
    if schema.get("type") == "string":
        yield where, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _strings(sub, f"{where}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _strings(schema["additionalProperties"], f"{where}.<value>")
    if "propertyNames" in schema:
        yield f"{where}.<key>", {"type": "string", **schema["propertyNames"]}
    if "items" in schema:
        yield from _strings(schema["items"], f"{where}[]")


def _request_strings() -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            for prm in op.get("parameters", []):
                yield from _strings(prm["schema"], f"{method.upper()} {path} {prm['in']}:{prm['name']}")
            if "requestBody" in op:
                body = op["requestBody"]["content"]["application/json"]["schema"]
                yield from _strings(body, f"{method.upper()} {path} body")


def test_no_request_string_is_unconstrained() -> None:
    strings = list(_request_strings())
    assert len(strings) > 30
    for where, s in strings:
        assert "pattern" in s or "enum" in s or "const" in s, where


def test_free_text_fields_carry_the_text_rule() -> None:
    free = {where for where, s in _request_strings() if s.get("pattern") == TEXT_PATTERN}
    assert free == {"POST /v1/pools body.description", "POST /v1/hosts body.labels.<value>",
                    "POST /v1/workloads body.required_labels.<value>",
                    "POST /v1/workloads body.forbidden_labels.<value>",
                    "POST /v1/workloads/batch body.workloads[].required_labels.<value>",
                    "POST /v1/workloads/batch body.workloads[].forbidden_labels.<value>",
                    "POST /v1/ip-pools/{name}/allocations body.owner",
                    "POST /v1/ip-pools/{name}/reservations body.note"}


# (method, url, valid body, where the text goes) for every free-text field
TEXT_FIELDS = [
    ("POST", "/v1/pools", {"name": "tp"}, ("description",)),
    ("POST", "/v1/hosts", {"name": "th", "capacity": {"vcpu": 1}, "labels": {"k": ""}}, ("labels", "k")),
    ("POST", "/v1/workloads?dry_run=true", {"name": "tw", "flavor": "tiny", "required_labels": {"k": ""}},
     ("required_labels", "k")),
    ("POST", "/v1/workloads?dry_run=true", {"name": "tw", "flavor": "tiny", "forbidden_labels": {"k": ""}},
     ("forbidden_labels", "k")),
    ("POST", "/v1/workloads/batch?dry_run=true",
     {"workloads": [{"name": "tb", "flavor": "tiny", "required_labels": {"k": ""}}]},
     ("workloads", 0, "required_labels", "k")),
    ("POST", "/v1/workloads/batch?dry_run=true",
     {"workloads": [{"name": "tb", "flavor": "tiny", "forbidden_labels": {"k": ""}}]},
     ("workloads", 0, "forbidden_labels", "k")),
    ("POST", "/v1/ip-pools/tlan/allocations", {}, ("owner",)),
    ("POST", "/v1/ip-pools/tlan/reservations", {"first": "10.66.0.10", "last": "10.66.0.19"}, ("note",)),
]
# what a field's requests need first, and how an accepted request is undone (so the next one fits)
SETUP = {"/v1/ip-pools/tlan": {"name": "tlan", "cidr": "10.66.0.0/24"}}
UNDO = {"/v1/pools": lambda body: ("DELETE", f"/v1/pools/{body['name']}", None),
        "/v1/hosts": lambda body: ("DELETE", f"/v1/hosts/{body['name']}", None),
        "/v1/ip-pools/tlan/reservations": lambda body: ("POST", "/v1/ip-pools/tlan/release",
                                                        {"first": body["first"], "last": body["last"]})}


def _with(body: dict[str, Any], where: tuple[str | int, ...], text: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = text
    return out


def test_every_free_text_field_is_tested() -> None:
    assert len(TEXT_FIELDS) == len([s for _, s in _request_strings() if s.get("pattern") == TEXT_PATTERN])


@pytest.mark.parametrize(("method", "url", "body", "where"), TEXT_FIELDS,
                         ids=[f"{u.split('?')[0]}:{'.'.join(map(str, w))}" for _, u, _, w in TEXT_FIELDS])
def test_control_and_bidi_characters_are_422(client: Any, admin: dict[str, str], method: str, url: str,
                                             body: dict[str, Any], where: tuple[str | int, ...]) -> None:
    for prefix, needed in SETUP.items():
        if url.startswith(prefix):
            assert client.post(prefix.rsplit("/", 1)[0], json=needed, headers=admin).status_code == 201
    for ch in FORBIDDEN:
        r = client.request(method, url, json=_with(body, where, f"ok{ch}ok"), headers=admin)
        assert r.status_code == 422, (repr(ch), r.text)
        assert "control characters" in r.json()["message"]
    for text in ALLOWED:
        r = client.request(method, url, json=_with(body, where, text[:63]), headers=admin)
        # accepted by validation (a batch asking for a label no host has is then 409 no_valid_host)
        assert r.status_code in (200, 201) or r.json()["error"] == "no_valid_host", (text, r.text)
        if url in UNDO:  # created or reserved: free the name or the range again
            undo_method, undo_url, undo_body = UNDO[url](body)
            r = client.request(undo_method, undo_url, json=undo_body, headers=admin)
            assert r.status_code in (200, 204), r.text


def test_reported_description_is_rejected_and_nothing_stored(client: Any, admin: dict[str, str],
                                                              svc: Services) -> None:
    r = client.post("/v1/pools", json={"name": "x1", "description": "\u0000\u001b[2J\u202e"}, headers=admin)
    assert r.status_code == 422
    assert "x1" not in {p.name for p in svc.catalog.list_pools()}


def test_services_keep_the_rule_too(svc: Services) -> None:
    """Callers of the Python API (not only HTTP clients) cannot store control characters."""
    with pytest.raises(InvalidInputError, match="U\\+001B"):
        svc.catalog.create_pool("p2", "\x1b[2J")
    with pytest.raises(InvalidInputError, match="U\\+202E"):
        svc.hosts.create_host("h2", {"vcpu": 1}, labels={"k": "\u202e"})
    with pytest.raises(InvalidInputError, match="U\\+0000"):
        svc.hosts.create_host("h2", {"vcpu": 1}, labels={"k\x00": "v"})


def test_domain_text_rule() -> None:
    for ch in FORBIDDEN:
        assert forbidden_char(f"ab{ch}") == 2
        with pytest.raises(InvalidInputError, match=f"U\\+{ord(ch[0]):04X}"):
            check_text("description", f"ab{ch}")
    for text in ALLOWED:
        assert check_text("description", text) == text


def _paths_with_several_methods() -> list[tuple[str, list[str]]]:
    out = []
    for path, item in DOC["paths"].items():
        methods = sorted(m.upper() for m in item)
        if len(methods) > 1:
            out.append((path, methods))
    return out


def test_405_lists_every_method_of_the_path(client: Any, admin: dict[str, str]) -> None:
    several = _paths_with_several_methods()
    assert len(several) >= 5
    for path, methods in several:
        url = path.replace("{name}", "demo")
        for method in ("PATCH", "OPTIONS", "TRACE") + tuple({"PUT", "POST", "DELETE"} - set(methods)):
            r = client.request(method, url, headers=admin)
            assert r.status_code == 405, (method, path)
            assert r.headers["allow"] == ", ".join(methods), (method, path, r.headers["allow"])
    r = client.put("/v1/workloads/batch", headers=admin)  # also fits /v1/workloads/{name}: the batch resource
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_413_declared_wherever_a_body_can_be_sent() -> None:
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            if method in ("post", "put", "patch"):
                assert "413" in op["responses"], (method, path)


def test_body_limits(client: Any, admin: dict[str, str]) -> None:
    pad = "x" * (DEFAULT_MAX_BODY + 1)
    r = client.post("/v1/pools", content=f'{{"name": "p", "description": "{pad}"}}',
                    headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"] == {"limit": DEFAULT_MAX_BODY}
    r = client.post("/v1/tasks/1/cancel", content=pad, headers=admin)  # no body expected: still bounded
    assert r.status_code == 413
    # a batch of 1000 items, each with a full demand, fits the bulk limit: schema-valid is not 413
    item = {"name": "n", "demand": {f"r{i:02d}_{'x' * 56}": 1e15 for i in range(32)}}
    batch = {"workloads": [{**item, "name": f"n{i}"} for i in range(1000)]}
    r = client.post("/v1/workloads/batch?dry_run=true", json=batch, headers=admin)
    assert r.status_code != 413 and r.status_code == 422  # unknown resources, but read in full
    r = client.post("/v1/utilization", content=b" " * (BULK_MAX_BODY + 1),
                    headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_schema_keywords_fit_their_types() -> None:
    """Constraints pydantic could not place (a validator before them) leak as `ge`/`le` or as
    `minLength` on an object, which JSON Schema ignores: the bound would be enforced but unstated."""
    def walk(node: Any, where: str, parent_key: str = "") -> Iterator[str]:
        if isinstance(node, dict):
            if parent_key != "properties":
                leaked = {"ge", "le", "gt", "lt", "min_length", "max_length"} & set(node)
                assert not leaked, (where, leaked)
                if {"minLength", "maxLength", "pattern"} & set(node) and parent_key != "propertyNames":
                    assert node.get("type") == "string", where
                if {"minimum", "maximum"} & set(node):
                    assert node.get("type") in ("number", "integer"), where
            for k, v in node.items():
                yield from walk(v, f"{where}/{k}", k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{where}/{i}", parent_key)
        yield where

    assert sum(1 for _ in walk(DOC, "")) > 500
