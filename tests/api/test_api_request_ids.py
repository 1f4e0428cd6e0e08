"""Request ids: assigned or accepted, echoed in X-Request-ID and error bodies, and carried by every
log line of the request (JSON and text formats)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from poolvisor.observability.logs import accept_request_id, configure
from poolvisor.services import Services

LOGGERS = ("poolvisor", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, LOGGERS)]
    buf = io.StringIO()
    configure("json", "info", stream=buf)
    yield buf
    for lg, handlers, level, propagate in saved:
        lg.handlers, lg.propagate = handlers, propagate
        lg.setLevel(level)


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_a_requests_log_lines_carry_its_id(client: Any, admin: dict[str, str], svc: Services,
                                           json_log: io.StringIO, monkeypatch: Any) -> None:
    def bug(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(svc.hosts, "list_hosts", bug)
    r = client.get("/v1/hosts", headers={**admin, "X-Request-ID": "trace-abc.123"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "trace-abc.123" and r.json()["request_id"] == "trace-abc.123"
    other = client.get("/v1/pools", headers=admin)
    lines = _lines(json_log)
    mine = [x for x in lines if x["request_id"] == "trace-abc.123"]
    # the traceback line and the access line, both with the id
    assert {x["logger"] for x in mine} >= {"poolvisor.api", "poolvisor.access"}, lines
    assert any("RuntimeError: boom" in x.get("exception", "") for x in mine)
    access = [x for x in lines if x["logger"] == "poolvisor.access"]
    assert [a["request_id"] for a in access] == ["trace-abc.123", other.headers["x-request-id"]]
    assert access[0]["status"] == 500 and access[0]["route"] == "/v1/hosts" and access[0]["duration_ms"] > 0
    assert all(x["request_id"] is not None for x in lines if x["logger"].startswith("poolvisor."))


def test_ids_are_generated_and_unique(client: Any) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5 and all(len(i) == 32 for i in ids)


@pytest.mark.parametrize("supplied", ["", "has space", "x" * 129, "semi;colon", "ünïcode", "a\tb"])
def test_an_insane_client_id_is_replaced(client: Any, supplied: str) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": supplied.encode()})
    assert r.status_code == 200 and r.headers["x-request-id"] != supplied
    assert accept_request_id(r.headers["x-request-id"]) == r.headers["x-request-id"]


def test_every_error_body_carries_the_id(client: Any) -> None:
    for r in (client.get("/v1/pools"), client.get("/nowhere"), client.post("/healthz"),
              client.post("/v1/pools", content=b"x" * 70000, headers={"Authorization": "Bearer x"})):
        assert r.status_code >= 400 and r.json()["request_id"] == r.headers["x-request-id"], r.text


def test_text_format_shows_the_id(client: Any) -> None:
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, LOGGERS)]
    buf = io.StringIO()
    try:
        configure("text", "info", stream=buf)
        client.get("/healthz", headers={"X-Request-ID": "txt-1"})
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
    assert "INFO: poolvisor.access [txt-1] GET /healthz 200" in buf.getvalue()
