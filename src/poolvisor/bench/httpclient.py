"""A small keep-alive HTTP/1.1 client on asyncio protocols, for load generation only.

httpx costs about 2-5 ms of CPU per request here (measured by `poolvisor bench api`'s
client_cpu_ms_per_request), so on a 2-core machine the client would use more CPU than the server
it measures. This client does only what the load needs: one request at a time per connection,
JSON bodies, Content-Length responses (what uvicorn sends), connections reused LIFO and opened
on demand up to a limit. It is not a general HTTP client (no chunked bodies, redirects or TLS).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection failed or closed before a whole response arrived (outcome unknown)."""


class Response:
    __slots__ = ("status_code", "headers", "body")

    def __init__(self, status_code: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.body = status_code, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        w = self.waiter
        if w is None or w.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            w.set_exception(HttpError("chunked responses are not supported"))
            return
        length = int(headers.get("content-length", "0"))
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        w.set_result(Response(int(lines[0][9:12]), headers, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(HttpError(f"connection lost: {exc or 'closed by the server'}"))


class Client:
    """Connections to one server (`http://host:port`), at most `limit` open at once."""

    def __init__(self, base_url: str, limit: int, timeout: float = 60.0) -> None:
        u = urlsplit(base_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.hostline = f"{self.host}:{self.port}"
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(limit)
        self.timeout = timeout

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(json_body).encode() if json_body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.hostline}", f"Content-Length: {len(body)}"]
        if json_body is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self.slots:
            conn = await self._conn()
            loop = asyncio.get_running_loop()
            conn.waiter = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(data)
            try:
                async with asyncio.timeout(self.timeout):
                    r = await conn.waiter
            except TimeoutError:
                conn.transport.close()
                raise HttpError(f"no answer within {self.timeout:g} s") from None
            finally:
                conn.waiter = None
            if r.headers.get("connection", "").lower() == "close":
                conn.transport.close()
            else:
                self.idle.append(conn)
            return r

    async def _conn(self) -> _Conn:
        while self.idle:
            c = self.idle.pop()
            if not c.closed:
                return c
        loop = asyncio.get_running_loop()
        try:
            _t, c = await loop.create_connection(_Conn, self.host, self.port)
        except OSError as e:
            raise HttpError(f"cannot connect to {self.hostline}: {e.strerror or e}") from None
        return c

    async def aclose(self) -> None:
        for c in self.idle:
            if c.transport is not None:
                c.transport.close()
        self.idle.clear()
