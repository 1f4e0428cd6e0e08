"""HTTP plumbing shared by the API-client commands (host, pool, flavor, project, vm).

Where to connect: `--url`, else POOLVISOR_URL, else http://127.0.0.1:8080. Which token: `--token`,
else POOLVISOR_TOKEN, else the file `poolvisor serve` writes (~/.config/poolvisor/token).
Every failure (connection refused, timeout, an API error) becomes one PoolvisorError line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

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


class ApiError(PoolvisorError):
    """An error answer from the API, carrying its status, code and detail."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.status_code = status
        self.code = code


def token_file() -> Path:
    """Where `poolvisor serve` writes the admin token (shared with other tools: keep the path)."""
    return Path.home() / ".config" / "poolvisor" / "token"


def resolve_token(token: str | None) -> str:
    if token:
        return token.strip()
    path = token_file()
    try:
        saved = path.read_text().strip()
    except FileNotFoundError:
        saved = ""
    except OSError as e:
        raise PoolvisorError(f"cannot read token file {path}: {e.strerror}") from None
    if not saved:
        raise PoolvisorError(
            f"no API token: pass --token, set {ENV_TOKEN}, or start 'poolvisor serve' once to create {path}")
    return saved


class Api:
    """A small synchronous client: JSON in, JSON out, errors as one-line PoolvisorErrors."""

    def __init__(self, url: str | None = None, token: str | None = None, *, need_token: bool = True) -> None:
        self.url = (url or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise PoolvisorError(f"--url must start with http:// or https://, got {self.url!r}")
        headers = {"Accept": "application/json"}
        if need_token:
            headers["Authorization"] = f"Bearer {resolve_token(token)}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_S)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, json=body, params=params)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, json=body)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    def request(self, method: str, path: str, *, json: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            r = self._client.request(method, path, json=json, params=query)
        except httpx.ConnectError as e:
            raise PoolvisorError(
                f"cannot connect to {self.url}: {_reason(e)} (is 'poolvisor serve' running?)") from None
        except httpx.TimeoutException:
            raise PoolvisorError(f"{self.url} did not answer within {TIMEOUT_S:g} s") from None
        except httpx.HTTPError as e:
            raise PoolvisorError(f"request to {self.url} failed: {_reason(e)}") from None
        if r.status_code >= 400:
            raise _api_error(r)
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text


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
