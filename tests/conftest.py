"""Shared fixtures. Real components: skip with a reason locally, fail when POOLVISOR_REQUIRE_REAL=1."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import typer.main
import typer.testing

from realenv import require_real  # noqa: F401  (its own module: sub-conftests import it too)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED_DATA.exists():  # a clone elsewhere: allow pointing at the data explicitly
    SHARED_DATA = Path(os.environ.get("POOLVISOR_SHARED_DATA", str(SHARED_DATA)))


def require_shared_data(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    require_real(p.exists(), f"shared data not found: {p}")
    return p


@pytest.fixture
def shared_data() -> Path:
    return require_shared_data()


# Several test directories have their own conftest.py, each imported under the module name
# `conftest`, the last one replacing the others in sys.modules. Point the name back at this file
# before each test module is imported, so `from conftest import require_real` always means here.
_ROOT_CONFTEST = sys.modules[__name__]


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module):
        sys.modules["conftest"] = _ROOT_CONFTEST


# `make test` runs the tests on parallel workers, except those listed in tests/serial.txt (load
# runs, kill -9 under load, the real-host lab): marked `serial` here, run afterwards one at a time.
SERIAL = tuple(line.strip() for line in (Path(__file__).with_name("serial.txt")).read_text().splitlines()
               if line.strip() and not line.startswith("#"))


@pytest.hookimpl(tryfirst=True)  # before -m "not serial" deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


# PostgreSQL fixtures (pg_server, pg_url) shared by every area's tests.
from pg import pg_server, pg_url  # noqa: E402, F401

# In-process CLI runs (`app(argv)`, `run_app(app, argv)`, typer's CliRunner) rebuild Click's whole
# command tree from the Typer app on every call (typer.main.get_command: signatures and type hints
# of ~150 commands, ~0.3 s; some modules run the CLI hundreds of times). The installed `poolvisor`
# builds it once per process; build it once per app here too. The tree is the same object the
# call would have built (apps are complete before their first run; a new app gets its own tree).
_BUILD_COMMAND = typer.main.get_command
_COMMANDS: dict[int, tuple[object, object]] = {}


def _command_once(app: typer.Typer) -> object:
    hit = _COMMANDS.get(id(app))
    if hit is None or hit[0] is not app:  # (the app is kept alive with its tree: ids are not reused)
        hit = _COMMANDS[id(app)] = (app, _BUILD_COMMAND(app))
    return hit[1]


typer.main.get_command = _command_once  # type: ignore[assignment]
typer.testing._get_command = _command_once  # type: ignore[attr-defined]
