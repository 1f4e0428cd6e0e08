"""Pieces of the CLI that need no server: option parsing and the admin-token policy of `serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from poolvisor.cli.client import Api, resolve_token, token_file
from poolvisor.cli.parse import parse_map
from poolvisor.cli.serve import ensure_admin_token
from poolvisor.domain.errors import InvalidInputError, PoolvisorError
from poolvisor.services import Services, open_services


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POOLVISOR_TOKEN", raising=False)
    return tmp_path / "home"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = open_services(f"sqlite:///{tmp_path / 'a.db'}")
    yield s
    s.close()


def test_parse_map() -> None:
    assert parse_map("vcpu=2, memory_mib=4096", "--demand", float) == {"vcpu": 2.0, "memory_mib": 4096.0}
    assert parse_map("gpu=true", "--require", str) == {"gpu": "true"}
    for bad in ("vcpu", "=2", "vcpu=2,vcpu=3", "vcpu=two", ",", ""):
        with pytest.raises(InvalidInputError):
            parse_map(bad, "--demand", float)


def test_token_written_once_then_kept(home: Path, svc: Services, tmp_path: Path) -> None:
    note = ensure_admin_token(svc)
    path = token_file()
    assert path == home / ".config" / "poolvisor" / "token" and "(new)" in note
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text().strip()
    who = svc.auth.authenticate(first)
    assert who is not None and who.role == "admin"
    assert "(new)" not in ensure_admin_token(svc)
    assert path.read_text().strip() == first
    # another database does not know that token: a fresh one replaces it
    other = open_services(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        ensure_admin_token(other)
        second = path.read_text().strip()
        assert second != first and other.auth.authenticate(second) is not None
    finally:
        other.close()


def test_env_token_is_adopted_and_no_file_written(home: Path, svc: Services,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLVISOR_TOKEN", "operator-chosen-token-123")
    ensure_admin_token(svc)
    ensure_admin_token(svc)  # idempotent
    who = svc.auth.authenticate("operator-chosen-token-123")
    assert who is not None and who.role == "admin"
    assert not token_file().exists()
    monkeypatch.setenv("POOLVISOR_TOKEN", "short")
    with pytest.raises(InvalidInputError):
        ensure_admin_token(svc)


def test_token_resolution(home: Path) -> None:
    with pytest.raises(PoolvisorError, match="no API token"):
        resolve_token(None)
    assert resolve_token(" abc \n") == "abc"
    token_file().parent.mkdir(parents=True)
    token_file().write_text("from-file\n")
    assert resolve_token(None) == "from-file"
    with pytest.raises(PoolvisorError, match="http://"):
        Api("ftp://example", "t")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["vm", "create"], "Missing argument 'name'"),
    (["serve", "--port", "abc"], "--port"),
    (["host", "list", "--bogus"], "No such option: --bogus"),
    (["nosuchcommand"], "No such command"),
])
def test_bad_arguments_are_one_line(argv: list[str], fragment: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from poolvisor.cli.entry import run_app
    from poolvisor.cli.errors import run_guarded
    from poolvisor.cli.main import app

    with pytest.raises(SystemExit) as exit_info:
        run_guarded(lambda: run_app(app, argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("poolvisor: error: ") and err.count("\n") == 1 and fragment in err, err


def test_cli_loads_heavy_libraries_only_when_a_command_needs_them() -> None:
    """Every `poolvisor` call imports the command tree: keep plotting, the store, the web stack
    and the compilers out of it (they cost ~0.7 s of start-up)."""
    import subprocess
    import sys

    code = (
        "import sys, poolvisor.cli.main\n"
        "heavy = ('matplotlib', 'sqlalchemy', 'fastapi', 'uvicorn', 'numba', 'scipy', 'pandas')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
