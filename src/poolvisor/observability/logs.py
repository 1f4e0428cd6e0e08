"""Log lines that say which request they belong to: `--log-format json|text` and the request id.

The API middleware (api/observe.py) puts each request's id in a context variable; a logging
filter copies it onto every record emitted while the request runs (in the event loop and in the
worker threads FastAPI runs sync routes on, which inherit the context), so every line of one
request, including its access line and an error's traceback, carries the same `request_id`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

REQUEST_ID: ContextVar[str | None] = ContextVar("poolvisor_request_id", default=None)
LOG_FORMATS = ("text", "json")
# a client-supplied id is kept when it is 1..128 of these (UUIDs, trace ids, ULIDs, ...)
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# attributes every LogRecord has: what is not among them was passed as `extra=` and is logged
# (uvicorn's `color_message` repeats the message with terminal colour codes: not for JSON)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                          "request_id", "color_message"}


def new_request_id() -> str:
    """32 random hex digits, as uuid4().hex was: unique, not secret, so from `random` (seeded by
    the OS at start and again in a forked child), not a getrandom system call per request (which
    also let go of the GIL: the event loop then waited for it behind busy threads)."""
    return f"{random.getrandbits(128):032x}"


def accept_request_id(supplied: str | None) -> str:
    """The client's X-Request-ID when it is sane (so a caller can follow its id through our logs),
    else a new one."""
    if supplied is not None and _SANE_ID.fullmatch(supplied):
        return supplied
    return new_request_id()


def current_request_id() -> str | None:
    return REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, the
    record's `extra=` fields, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`LEVEL logger [request id] message` (the id only inside a request)."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        line = f"{record.levelname}: {record.name}{f' [{rid}]' if rid else ''} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def make_handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure(fmt: str, level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send poolvisor's and uvicorn's loggers to one handler in `fmt` (serve calls this and gives
    uvicorn no logging config of its own). Returns the handler (tests remove it)."""
    handler = make_handler(fmt, stream)
    lvl = logging.DEBUG if level in ("debug", "trace") else getattr(logging, level.upper())
    for name in ("poolvisor", "uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = [handler] if name in ("poolvisor", "uvicorn") else []
        lg.setLevel(lvl)
        lg.propagate = name not in ("poolvisor", "uvicorn")
    return handler
