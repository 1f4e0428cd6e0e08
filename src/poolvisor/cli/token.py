"""`poolvisor token ...`: create, list and revoke bearer tokens; rotate the admin token (API client).

Admins manage every token; a member token manages the member tokens of its own project. A new
token is printed once (only its sha256 digest is stored). `rotate-admin` replaces the admin token
in the token file that `poolvisor serve` wrote: it mints a new admin token, writes the file
atomically with mode 0600, then revokes the old token with the new one, so at every step one
working admin token is on disk.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path, token_file
from poolvisor.cli.errors import fail
from poolvisor.cli.render import emit_json, printable, say, table
from poolvisor.domain.errors import PoolvisorError

app = typer.Typer(help="Bearer tokens: create, list, revoke, rotate the admin token (API client).",
                  no_args_is_help=True)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_EXPIRES_IN_S = 10 * 366 * 86400  # = services.auth.MAX_EXPIRES_IN_S (not imported: no store stack)



def parse_duration(text: str) -> int:
    """'30d', '12h', '90m', '45s', '2w' or plain seconds -> seconds (1 s .. 10 years)."""
    m = re.fullmatch(r"\s*(\d{1,12})\s*([smhdw]?)\s*", text)
    if m is None:
        raise PoolvisorError(f"--expires-in: expected a duration like 30d, 12h, 90m, 45s or 2w, got {text!r}")
    seconds = int(m.group(1)) * UNITS[m.group(2) or "s"]
    if not 1 <= seconds <= MAX_EXPIRES_IN_S:
        raise PoolvisorError(f"--expires-in must be between 1 s and 10 years, got {text!r}")
    return seconds


ExpiresOpt = Annotated[str | None, typer.Option(
    "--expires-in", help="Expire after this long: 30d, 12h, 90m, 45s, 2w [default: never, or when the "
    "token creating it expires]", show_default=False)]
LabelOpt = Annotated[str, typer.Option("--label", help="A name to recognize the token by in `token list`.")]


@app.command()
def create(
    project: Annotated[str | None, typer.Option(
        "--project", "-p", help="Project of a member token (members: their own, the default).")] = None,
    role: Annotated[str, typer.Option("--role", help="member, viewer (read-only; from an admin without "
                                      "--project: a global viewer), or admin (admins only).")] = "member",
    expires_in: ExpiresOpt = None, label: LabelOpt = "",
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Mint a token; it is printed once (stdout), only its hash is stored."""
    if role not in ("member", "viewer", "admin"):
        raise fail(f"--role must be member, viewer or admin, got {role!r}")
    body: dict[str, Any] = {"role": role, "label": label}
    if project is not None:
        body["project"] = project
    if expires_in is not None:
        body["expires_in"] = parse_duration(expires_in)
    with Api(url, token) as api:
        t = api.post(api_path("tokens"), body)
    if as_json:
        emit_json(t)
    else:
        typer.echo(printable(t["token"]))
        until = f", expires {t['expires_at']}" if t.get("expires_at") else ", never expires"
        typer.echo(printable(f"poolvisor: token {t['id']} ({t['role']}"
                             f"{' of ' + t['project'] if t['project'] else ''}{until}); shown only now"),
                   err=True)


@app.command("list")
def list_(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Only this project's tokens.")]
    = None,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List tokens (admins: all; members: their project's). Secrets are never shown, only a hint."""
    with Api(url, token) as api:
        tokens = api.get(api_path("tokens"), project=project)
        me = api.get(api_path("whoami")).get("token_id")
    if as_json:
        emit_json(tokens)
        return
    table("Tokens", ("id", "role", "project", "label", "hint", "state", "created", "expires", "by"), [
        (f"{t['id']}{' (this)' if t['id'] == me else ''}", t["role"], t["project"] or "–", t["label"] or "–",
         f"{t['hint']}…" if t["hint"] else "–", t["state"], _when(t["created_at"]), _when(t["expires_at"]),
         str(t["created_by"]) if t["created_by"] is not None else "–")
        for t in tokens])


@app.command()
def revoke(
    token_id: Annotated[int, typer.Argument(min=1, help="Token id (see `poolvisor token list`).")],
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Revoke a token: refused (401) at once by every server sharing the database."""
    with Api(url, token) as api:
        api.delete(api_path("tokens", str(token_id)))
    say("token {} revoked", token_id)


@app.command("rotate-admin")
def rotate_admin(
    file: Annotated[Path | None, typer.Option(
        "--file", help="Token file to replace [default: ~/.config/poolvisor/token]", show_default=False)]
    = None,
    url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Replace the admin token: mint one, write it to the token file (mode 0600), revoke the old."""
    from poolvisor.cli.serve import write_token

    path = file or token_file()
    with Api(url, token) as old_api:
        me = old_api.get(api_path("whoami"))
        if me.get("role") != "admin" or me.get("token_id") is None:
            raise fail("rotate-admin needs an admin token (--token, POOLVISOR_TOKEN or the token file)")
        new = old_api.post(api_path("tokens"), {"role": "admin", "label": "rotated"})
        try:
            write_token(path, new["token"])
        except OSError as e:
            old_api.delete(api_path("tokens", str(new["id"])))  # nothing changed after all
            raise fail(f"cannot write {path}: {e.strerror}; the admin token was not rotated") from None
    with Api(url, new["token"]) as new_api:
        try:
            new_api.delete(api_path("tokens", str(me["token_id"])))
        except PoolvisorError as e:
            raise fail(f"the new admin token {new['id']} is in {path}, but revoking the old token "
                       f"{me['token_id']} failed: {e.message}") from None
    if as_json:
        emit_json({"revoked": me["token_id"], "id": new["id"], "file": str(path),
                   "expires_at": new["expires_at"]})
    else:
        say("admin token rotated: token {} revoked, new token {} written to {}",
            me["token_id"], new["id"], path)
    if token:  # the old one came from --token or POOLVISOR_TOKEN, not from the file
        typer.echo(f"poolvisor: note: the token you passed is revoked now; use the new one in {path} "
                   "(and update POOLVISOR_TOKEN where it is set)", err=True)


def _when(ts: str | None) -> str:
    return ts[:19].replace("T", " ") if ts else "–"
