"""The CLI as a hostile user drives it (issue 9): names cannot steer URLs, numbers are finite, every
failure is one line, and text stored on the server cannot drive the terminal.

The CLI runs in this process through its real entry (`run_guarded(run_app(...))`, as
`poolvisor.cli.main:main`) against a real `poolvisor serve` on a loopback port. To prove that a bad
name sends *nothing* the real httpx transport is wrapped by a spy that records each request and
then really sends it: a MockTransport could only show the URL that would be sent, while the spy also
lets a request that escaped the check reach the server and do its damage (checked separately).
"""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
from test_cli_serve import CLI, Server, server  # noqa: F401 - the module's real server

from poolvisor.cli.client import Api, ApiError, ApiPath, api_path, resolve_token, token_file
from poolvisor.cli.entry import click_exceptions, run_app
from poolvisor.cli.errors import CliUsageError, run_guarded
from poolvisor.cli.main import app
from poolvisor.cli.render import printable
from poolvisor.cli.whatif import parse_since

BAD_NAMES = ["../pools/x", "a?b=c", "a/b", "%2e%2e", "..", "", "a b", "a\x1b[2J", "x" * 64]
CLI_DIR = Path(__file__).resolve().parents[2] / "src" / "poolvisor" / "cli"


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command of the Typer app with its argv prefix (a new command is found too)."""
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from walk(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS = list(walk(typer.main.get_command(app)))
NAMED = [(path, cmd) for path, cmd in COMMANDS
         if any(p.name == "name" and p.param_type_name == "argument" for p in cmd.params)]


def argv_with_name(path: tuple[str, ...], cmd: Any, name: str) -> list[str]:
    """argv for `cmd` with NAME = `name` and a plausible value for every other required parameter."""
    args = [*path]
    for p in cmd.params:
        if p.param_type_name == "argument":
            args.append(name if p.name == "name" else "up")
        elif p.required:
            args += [p.opts[0], "vcpu=1"]
    return args


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def one_line(self, code: int, *fragments: str) -> None:
        assert self.code == code, (self.code, self.out, self.err)
        assert self.err.startswith("poolvisor: error: ") and self.err.count("\n") == 1, self.err
        assert "Traceback" not in self.out + self.err
        for f in fragments:
            assert f in self.err, self.err


@pytest.fixture
def cli(server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    for k in ("POOLVISOR_TOKEN", "POOLVISOR_PROJECT", "POOLVISOR_DEBUG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(server.home))
    monkeypatch.setenv("POOLVISOR_URL", server.url)

    def invoke(*argv: str) -> Result:
        capsys.readouterr()
        with pytest.raises(SystemExit) as ex:
            run_guarded(lambda: run_app(app, list(argv)))
        out, err = capsys.readouterr()
        return Result(int(ex.value.code or 0), out, err)

    return invoke


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Every request the CLI hands to the network (each one is then really sent)."""
    requests: list[httpx.Request] = []
    real = httpx.HTTPTransport.handle_request

    def spy(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return real(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", spy)
    return requests


# --- 1. names never steer the URL ------------------------------------------------------------

def test_every_client_command_with_a_name_is_enumerated() -> None:
    found = {" ".join(p) for p, _ in NAMED}
    assert {"vm delete", "vm show", "host state", "pool consolidate", "project token"} <= found
    assert len(found) >= 20, found


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
@pytest.mark.parametrize(("path", "cmd"), NAMED, ids=[" ".join(p) for p, _ in NAMED])
def test_invalid_name_is_one_line_and_sends_nothing(path: tuple[str, ...], cmd: Any, bad: str, cli: Any,
                                                    sent: list[httpx.Request]) -> None:
    r = cli(*argv_with_name(path, cmd, bad))
    r.one_line(2, "is not a name")
    assert sent == [], [str(q.url) for q in sent]


def test_the_reported_injections_do_no_damage(cli: Any, sent: list[httpx.Request]) -> None:
    assert cli("pool", "create", "victim").code == 0
    sent.clear()
    for argv in (["vm", "delete", "../pools/victim"], ["vm", "show", "../hosts/demo-000"],
                 ["vm", "show", "a1?project=proj-a"], ["vm", "stop", "../../v1/pools/victim"]):
        cli(*argv).one_line(2, "is not a name")
    assert sent == []
    r = cli("pool", "show", "victim", "--json")
    assert r.code == 0 and json.loads(r.out)["name"] == "victim"


def test_a_valid_name_is_one_encoded_segment_and_queries_go_as_params(cli: Any,
                                                                      sent: list[httpx.Request]) -> None:
    """The spy sees what the server sees: the path segment and the query are exactly as built."""
    cli("vm", "show", "ghost.v-1_a", "--project", "a&b=c").one_line(1)
    assert len(sent) == 1
    url = sent[0].url
    assert url.raw_path == b"/v1/workloads/ghost.v-1_a?project=a%26b%3Dc"
    assert dict(url.params) == {"project": "a&b=c"}


def test_api_path_checks_and_encodes_every_segment() -> None:
    assert api_path("hosts", "demo-000", "state") == ApiPath("/v1/hosts/demo-000/state")
    for bad in BAD_NAMES:
        with pytest.raises(CliUsageError):
            api_path("workloads", bad)
    with Api("http://127.0.0.1:9", "t" * 20) as api, pytest.raises(TypeError, match="api_path"):
        api.get("/v1/hosts")  # type: ignore[arg-type]


def test_no_url_is_built_outside_api_path() -> None:
    """A name can only reach a URL through api_path: no module of cli/ writes a /v1 path itself."""
    offenders = []
    for file in sorted(CLI_DIR.glob("*.py")):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and any(
                    isinstance(v, ast.Constant) and "/v1/" in str(v.value) for v in node.values):
                offenders.append(f"{file.name}:{node.lineno} f-string URL")
            sides = (node.left, node.right) if isinstance(node, ast.BinOp) else ()
            if file.name != "client.py" and any(
                    isinstance(side, ast.Constant) and "/v1/" in str(side.value) for side in sides):
                offenders.append(f"{file.name}:{node.lineno} concatenated URL")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ApiPath"
                    and file.name != "client.py"):
                offenders.append(f"{file.name}:{node.lineno} ApiPath() outside api_path")
            if (isinstance(node, ast.ImportFrom) and node.module == "poolvisor.cli.render"
                    and any(a.name == "console" for a in node.names)):
                offenders.append(f"{file.name}:{node.lineno} prints with the raw console (use say/table)")
    assert offenders == []


# --- 5. no tracebacks: finite numbers, bad URL/token, last-resort handler ----------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "NaN"])
def test_demand_must_be_finite(value: str, cli: Any, sent: list[httpx.Request]) -> None:
    cli("vm", "create", "x", "--demand", f"vcpu={value}", "--project", "demo").one_line(1, "finite")
    cli("host", "create", "h", "--capacity", f"vcpu={value}").one_line(1, "finite")
    assert sent == []


def _float_params() -> list[tuple[tuple[str, ...], Any, Any]]:
    out = []
    for path, cmd in COMMANDS:
        ctx = cmd.context_class(cmd)
        for p in cmd.params:
            try:
                value = p.process_value(ctx, "1.5")
            except Exception:  # not a number-like parameter (or a path that must exist)
                continue
            if isinstance(value, float):
                out.append((path, cmd, p))
    return out


FLOAT_PARAMS = _float_params()


def test_every_float_option_is_found() -> None:
    assert len(FLOAT_PARAMS) >= 11, [(p, q.name) for p, _, q in FLOAT_PARAMS]


@pytest.mark.parametrize(("path", "cmd", "param"), FLOAT_PARAMS,
                         ids=[f"{' '.join(p)} {q.name}" for p, _, q in FLOAT_PARAMS])
def test_every_float_option_rejects_non_finite_numbers(path: tuple[str, ...], cmd: Any, param: Any) -> None:
    ctx = cmd.context_class(cmd)
    for value in ("nan", "inf", "-inf", "1e400"):
        with pytest.raises(click_exceptions.BadParameter, match="finite"):
            param.process_value(ctx, value)


def test_non_finite_option_is_one_line_through_the_entry(cli: Any) -> None:
    cli("whatif", "--param", "nan").one_line(2, "--param", "finite")
    cli("simulate", "azure", "--host-vcpu", "1e400").one_line(2, "--host-vcpu", "finite")


def test_since_too_far_back_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        parse_since("99999999999999999999d")
    assert capsys.readouterr().err.startswith("poolvisor: error: --since")


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:1/\x1b", "http://127.0.0.1:x"])
def test_bad_url_is_one_line(url: str, cli: Any) -> None:
    cli("vm", "list", "--url", url).one_line(1, "--url")


@pytest.mark.parametrize("token", ["pvé", "a b c d", "abc\x1bdef", "tok\u202e"])
def test_unsendable_token_is_one_line_and_not_echoed(token: str, cli: Any, sent: list[httpx.Request]) -> None:
    r = cli("vm", "list", "--token", token)
    r.one_line(1, "HTTP header")
    assert token not in r.err and sent == []


def test_unreadable_token_file_is_one_line(cli: Any, server: Server, tmp_path: Path,  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = token_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"abc\xffdef")
    cli("vm", "list").one_line(1, "not ASCII")
    path.write_bytes("tok\u00e9n-\u202e-value".encode())
    cli("vm", "list").one_line(1, "not ASCII")
    path.write_bytes(b"abc\x01def-ghijklmnop")
    cli("vm", "list").one_line(1, "HTTP header")
    path.unlink()
    path.mkdir()
    cli("vm", "list").one_line(1, "cannot read token file")
    assert resolve_token(" fine-token-value \n") == "fine-token-value"


def test_unexpected_exception_is_one_line(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The class, not the examples: any exception a command did not foresee is one line, exit 1."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something broke\nsecond line \x1b[2J")

    monkeypatch.setattr(httpx.Client, "request", broken)
    r = cli("host", "list")
    r.one_line(1, "RuntimeError: something broke", "POOLVISOR_DEBUG")
    assert "\x1b" not in r.err and "second line" not in r.err
    monkeypatch.setenv("POOLVISOR_DEBUG", "1")
    with pytest.raises(RuntimeError):
        run_guarded(lambda: run_app(app, ["host", "list"]))


def test_server_error_message_is_one_printable_line(capsys: pytest.CaptureFixture[str]) -> None:
    def fail() -> None:
        raise ApiError(409, "conflict", "pool '\x1b[2J' is\nbusy \u202e")

    with pytest.raises(SystemExit) as ex:
        run_guarded(fail)
    err = capsys.readouterr().err
    assert ex.value.code == 1 and err == "poolvisor: error: pool '\\x1b[2J' is\\x0abusy \\u202e\n"


def test_repros_through_the_installed_entry_point(server: Server) -> None:  # noqa: F811
    """The real `python -m poolvisor.cli.main` process: exit codes and one line, no traceback."""
    for argv, code in ((["vm", "create", "x", "--demand", "vcpu=nan"], 1),
                       (["vm", "list", "--url", "http://[::1"], 1),
                       (["vm", "list", "--token", "pvé"], 1), (["vm", "delete", "../pools/pdc"], 2)):
        r = subprocess.run([*CLI, *argv], env=server.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == code, (argv, r.stderr)
        assert r.stderr.startswith("poolvisor: error: ") and r.stderr.count("\n") == 1, r.stderr


# --- 9. text from the server is shown, never obeyed -------------------------------------------

def test_printable_escapes_controls_and_bidi_only() -> None:
    assert printable("\x00\x1b[2J\u202e") == "\\x00\\x1b[2J\\u202e"
    assert printable("\x7f\x9b\t\n") == "\\x7f\\x9b\\x09\\x0a"
    for c in ("\u061c", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069"):
        assert printable(c) == f"\\u{ord(c):04x}"
    assert printable("héllo wörld – 日本 [bold]") == "héllo wörld – 日本 [bold]"


EVIL = "\x00\x1b[2J\u202e\x7f\x9b\u2066[red]x[/red]"
RAW = {chr(c) for c in (*range(0x00, 0x0a), *range(0x0b, 0x20), *range(0x7f, 0xa0), 0x061C, 0x200E,
                        0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


@pytest.fixture(scope="module")
def evil_rows(server: Server) -> None:  # noqa: F811
    """Rows as an older server (or a direct database write) could have left them: the services
    and the API will refuse such text, so it is written through the store layer."""
    from poolvisor.store import open_store
    from poolvisor.store.rows import PoolRow

    store = open_store(f"sqlite:///{server.home.parent / 'pv.db'}")
    try:
        store.run(lambda s: s.add_all([PoolRow(name="evil", description=EVIL),
                                       PoolRow(name="[bold]lit", description="[link=http://x]y[/link]")]))
    finally:
        store.close()


def _assert_inert(text: str) -> None:
    assert not RAW & set(text), sorted(hex(ord(c)) for c in RAW & set(text))


def test_pool_list_and_show_print_stored_text_inert(server: Server, evil_rows: None) -> None:  # noqa: F811
    for argv in (["pool", "list"], ["pool", "show", "evil"]):
        r = server.cli(*argv)
        assert r.returncode == 0, r.stderr
        _assert_inert(r.stdout)
        assert "\\x00\\x1b[2J\\u202e\\x7f\\x9b\\u2066[red]x[/red]" in r.stdout, r.stdout
    listing = server.cli("pool", "list").stdout
    assert "[bold]lit" in listing and "[link=http://x]y[/link]" in listing, listing


def test_json_output_stays_valid_and_ascii(server: Server, evil_rows: None) -> None:  # noqa: F811
    r = server.cli("pool", "list", "--json")
    assert r.returncode == 0, r.stderr
    _assert_inert(r.stdout)
    assert r.stdout.isascii()
    pools = {p["name"]: p for p in json.loads(r.stdout)}
    assert pools["evil"]["description"] == EVIL and "[bold]lit" in pools


def test_say_prints_values_literally(capsys: pytest.CaptureFixture[str]) -> None:
    from poolvisor.cli.render import say

    say("[bold]{}[/bold] and {}", "[red]x[/red]\\", "\x1b]0;title\x07:smile:")
    out = capsys.readouterr().out
    assert out == "[red]x[/red]\\ and \\x1b]0;title\\x07:smile:\n", out
