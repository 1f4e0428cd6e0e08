"""HTTP plumbing shared by the API-client commands (host, pool, flavor, project, vm).

Where to connect: `--url`, else POOLVISOR_URL, else http://127.0.0.1:8080. Which token: `--token`,
else POOLVISOR_TOKEN, else the file `poolvisor serve` writes (~/.config/poolvisor/token).
Every failure (connection refused, timeout, an API error, a bad URL or token) becomes one
PoolvisorError line.

Paths are built only by `api_path`: each segment must be a valid name (the server's creation rule)
and is percent-encoded, and `Api` accepts nothing else, so a name such as `../pools/x`, `a/b` or
`a?b=c` can never reach another route or add a query string; query parameters go as `params`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from poolvisor.cli.errors import CliUsageError
from poolvisor.domain.errors import PoolvisorError

DEFAULT_URL = "http://127.0.0.1:8080"
ENV_URL = "POOLVISOR_URL"
ENV_TOKEN = "POOLVISOR_TOKEN"
TIMEOUT_S = 30.0

UrlOpt = Annotated[str | None, typer.Option(
    "--url", envvar=ENV_URL, help=f"API base URL [default: {DEFAULT_URL}]", show_default=False)]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar=ENV_TOKEN, help="Bearer token [default: ~/.config/poolvisor/token]",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


NAME_RULE = "1..63 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_name(value: str, what: str = "name") -> str:
    """`value` if it is a valid name (the API's NAME_PATTERN, as for creating any object); else a
    one-line usage error (exit 2) raised before anything is sent."""
    from poolvisor.api.schemas import NAME_PATTERN  # loads pydantic, which parsing options loads anyway

    if not isinstance(value, str) or re.fullmatch(NAME_PATTERN, value) is None:
        raise CliUsageError(f"invalid {what} {value!r}: a name is {NAME_RULE}")
    return value


def name_argument(value: str) -> str:
    """Typer callback for NAME arguments: reject an invalid name while parsing (exit 2)."""
    try:
        return check_name(value)
    except CliUsageError:
        raise typer.BadParameter(f"{value!r} is not a name ({NAME_RULE})") from None


@dataclass(frozen=True)
class ApiPath:
    """A URL path below /v1 made only by `api_path`; `Api` refuses plain strings."""

    text: str


def api_path(*segments: str) -> ApiPath:
    """`api_path("hosts", name, "state")` -> /v1/hosts/NAME/state: every segment, literal or not,
    is checked as a name and percent-encoded, so it stays one segment of the intended route."""
    if not segments:
        raise ValueError("api_path needs at least one segment")
    return ApiPath("/v1/" + "/".join(quote(check_name(s, "path segment"), safe="") for s in segments))


class ApiError(PoolvisorError):
    """An error answer from the API, carrying its status, code and detail."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.status_code = status
        self.code = code


def token_file() -> Path:
    """Where `poolvisor serve` writes the admin token (shared with other tools: keep the path)."""
    return Path.home() / ".config" / "poolvisor" / "token"


def _sendable(token: str, source: str) -> str:
    """A bearer token goes into an HTTP header: visible ASCII only (the token itself is not echoed)."""
    if not all("!" <= c <= "~" for c in token):
        raise PoolvisorError(f"the token from {source} has characters an HTTP header cannot carry "
                             "(non-ASCII, spaces or control characters)")
    return token


def resolve_token(token: str | None) -> str:
    if token:
        return _sendable(token.strip(), f"--token or {ENV_TOKEN}")
    path = token_file()
    try:
        saved = path.read_bytes().decode("ascii").strip()
    except FileNotFoundError:
        saved = ""
    except UnicodeDecodeError:
        raise PoolvisorError(f"token file {path} is not ASCII text (rewrite it or pass --token)") from None
    except OSError as e:
        raise PoolvisorError(f"cannot read token file {path}: {e.strerror or e}") from None
    if not saved:
        raise PoolvisorError(
            f"no API token: pass --token, set {ENV_TOKEN}, or start 'poolvisor serve' once to create {path}")
    return _sendable(saved, str(path))


class Api:
    """A small synchronous client: JSON in, JSON out, errors as one-line PoolvisorErrors."""

    def __init__(self, url: str | None = None, token: str | None = None, *, need_token: bool = True) -> None:
        self.url = (url or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise PoolvisorError(f"--url must start with http:// or https://, got {self.url!r}")
        headers = {"Accept": "application/json"}
        if need_token:
            headers["Authorization"] = f"Bearer {resolve_token(token)}"
        try:
            self._client = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_S)
        except (httpx.InvalidURL, ValueError) as e:  # 'http://[::1', a bad port, a non-ASCII host
            raise PoolvisorError(f"invalid --url {self.url!r}: {_reason(e)}") from None

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def get(self, path: ApiPath, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: ApiPath, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=body, params=params)

    def put(self, path: ApiPath, body: Any = None) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: ApiPath, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    def request(self, method: str, path: ApiPath, *, json: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        if not isinstance(path, ApiPath):  # a str here would be a name pasted into a URL
            raise TypeError(f"Api paths are built with api_path(), got {type(path).__name__}")
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self._client.request(method, path.text, json=json, params=query)
        except httpx.ConnectError as e:
            raise PoolvisorError(
                f"cannot connect to {self.url}: {_reason(e)} (is 'poolvisor serve' running?)") from None
        except httpx.TimeoutException:
            raise PoolvisorError(f"{self.url} did not answer within {TIMEOUT_S:g} s") from None
        except httpx.HTTPError as e:
            raise PoolvisorError(f"request to {self.url} failed: {_reason(e)}") from None
        except (httpx.InvalidURL, UnicodeError, ValueError) as e:  # raised while building the request
            raise PoolvisorError(f"cannot send a request to {self.url}: {_reason(e)}") from None
        if r.status_code >= 400:
            raise _api_error(r)
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text


    @contextmanager
    def stream(self, path: ApiPath, headers: dict[str, str] | None = None,
               **params: Any) -> Iterator[Iterator[str]]:
        """A long GET read line by line (server-sent events): no read timeout, errors as request()'s
        (a connection lost mid-stream is a PoolvisorError too)."""
        if not isinstance(path, ApiPath):
            raise TypeError(f"Api paths are built with api_path(), got {type(path).__name__}")
        query = {k: v for k, v in params.items() if v is not None}
        timeout = httpx.Timeout(TIMEOUT_S, read=None)
        try:
            with self._client.stream("GET", path.text, params=query, headers=headers, timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _api_error(r)
                yield _lines(r, self.url)
        except httpx.ConnectError as e:
            raise PoolvisorError(
                f"cannot connect to {self.url}: {_reason(e)} (is 'poolvisor serve' running?)") from None
        except httpx.HTTPError as e:
            raise PoolvisorError(f"stream from {self.url} failed: {_reason(e)}") from None


def _lines(r: httpx.Response, url: str) -> Iterator[str]:
    try:
        yield from r.iter_lines()
    except httpx.HTTPError as e:
        raise PoolvisorError(f"stream from {url} ended: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text.splitlines()[0]


def _api_error(r: httpx.Response) -> ApiError:
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        code, message, detail = str(body.get("error", "error")), str(body["message"]), body.get("detail")
    else:
        code, message, detail = "error", f"HTTP {r.status_code} {r.reason_phrase}".strip(), None
    if r.status_code == 401:
        message += f" (check --token, {ENV_TOKEN} or {token_file()})"
    return ApiError(r.status_code, code, message, detail)
