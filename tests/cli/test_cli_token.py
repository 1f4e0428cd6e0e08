"""`poolvisor token create|list|revoke|rotate-admin` against a real `poolvisor serve` process."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import test_cli_serve
from test_cli_serve import Server, one_error_line

from poolvisor.cli.client import api_path
from poolvisor.cli.errors import CliUsageError
from poolvisor.cli.token import parse_duration

# this module's own `poolvisor serve` (module scope) and in-process CLI runner
server = test_cli_serve.server
run = test_cli_serve.run


def status(server: Server, token: str) -> int:
    return httpx.get(f"{server.url}/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code


def test_create_list_revoke(server: Server, run: Callable[..., Any]) -> None:
    r = run("token", "create", "--project", "demo", "--expires-in", "2h", "--label", "ci")
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    assert tok.startswith("pv_") and "\n" not in tok and "shown only now" in r.stderr
    assert status(server, tok) == 200
    listed = json.loads(run("token", "list", "--json").stdout)
    mine = [t for t in listed if t["label"] == "ci"]
    assert len(mine) == 1 and mine[0]["project"] == "demo" and mine[0]["state"] == "active"
    assert mine[0]["expires_at"] and tok not in json.dumps(listed)
    human = run("token", "list").stdout
    assert "(this)" in human and "ci" in human and tok not in human
    r = run("token", "revoke", str(mine[0]["id"]))
    assert r.returncode == 0 and f"token {mine[0]['id']} revoked" in r.stdout
    assert status(server, tok) == 401
    one_error_line(run("vm", "list", "--token", tok), "bearer token revoked")


def test_a_member_manages_its_projects_tokens(server: Server, run: Callable[..., Any]) -> None:
    member = run("token", "create", "--project", "demo").stdout.strip()
    r = run("token", "create", "--token", member, "--json")  # its own project by default
    assert r.returncode == 0, r.stderr
    child = json.loads(r.stdout)
    assert (child["role"], child["project"]) == ("member", "demo")
    one_error_line(run("token", "create", "--role", "admin", "--token", member), "admin")
    listed = json.loads(run("token", "list", "--json", "--token", member).stdout)
    assert {t["project"] for t in listed} == {"demo"}
    assert run("token", "revoke", str(child["id"]), "--token", member).returncode == 0
    assert status(server, child["token"]) == 401


@pytest.mark.parametrize("args,fragment", [
    (("create", "--project", "demo", "--expires-in", "3x"), "--expires-in"),
    (("create", "--project", "demo", "--expires-in", "0s"), "--expires-in"),
    (("create", "--project", "demo", "--expires-in", "11000d"), "--expires-in"),
    (("create", "--role", "root"), "--role"),
    (("create", "--project", "nope"), "not found"),
    (("revoke", "999999"), "not found"),
])
def test_token_errors_are_one_line(server: Server, run: Callable[..., Any], args: tuple[str, ...],
                                   fragment: str) -> None:
    one_error_line(run("token", *args), fragment)


def test_rotate_admin_replaces_the_token_file(server: Server, run: Callable[..., Any]) -> None:
    path = server.home / ".config" / "poolvisor" / "token"
    old = path.read_text().strip()
    r = run("token", "rotate-admin")
    assert r.returncode == 0, r.stderr
    assert "admin token rotated" in r.stdout
    new = path.read_text().strip()
    assert new != old and path.stat().st_mode & 0o777 == 0o600
    assert status(server, old) == 401 and status(server, new) == 200
    assert not list(path.parent.glob(".token*"))  # no temporary file left behind
    states = {t["hint"]: t["state"] for t in json.loads(run("token", "list", "--json").stdout)}
    assert states[old[:7]] == "revoked" and states[new[:7]] == "active"
    # the CLI keeps working from the file, and a member token cannot rotate
    assert run("host", "list", "--json").returncode == 0
    member = run("token", "create", "--project", "demo").stdout.strip()
    one_error_line(run("token", "rotate-admin", "--token", member), "needs an admin token")
    assert path.read_text().strip() == new


def test_revoking_the_last_admin_token_is_refused(server: Server, run: Callable[..., Any]) -> None:
    admins = [t for t in json.loads(run("token", "list", "--json").stdout)
              if t["role"] == "admin" and t["state"] == "active"]
    assert len(admins) == 1
    one_error_line(run("token", "revoke", str(admins[0]["id"])), "last valid admin token")


def test_helpers() -> None:
    assert api_path("tokens", "7").text == "/v1/tokens/7"
    with pytest.raises(CliUsageError):  # the shared builder refuses a segment that is not a name
        api_path("tokens", "../pools/x?y=1")
    assert [parse_duration(t) for t in ("45", "45s", "90m", "12h", "30d", "2w")] == \
        [45, 45, 5400, 43200, 2592000, 1209600]


def test_expiry_limits_agree() -> None:
    from poolvisor.api.schemas import MAX_TOKEN_EXPIRES_IN_S
    from poolvisor.cli import token
    from poolvisor.services import auth

    assert token.MAX_EXPIRES_IN_S == auth.MAX_EXPIRES_IN_S == MAX_TOKEN_EXPIRES_IN_S
